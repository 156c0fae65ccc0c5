# ienet_infer (ienet_infer.cc here), cross-compiled static for aarch64 against the objects of
# ienet-lce-runner: rules read after converters/arm_runtime/Makefile, whose variables (the
# sources, the flags, the object lists, the cache folder) they use:
#
#   make arm-example                                                 # at the top level, or
#   make -C converters/arm_runtime -f Makefile -f ../cpp/example.mk example
#   make -s -C converters/arm_runtime -f Makefile -f ../cpp/example.mk print-example
#
# It builds the runner first where it is not built ($(BUILD)/manifest.json), then compiles
# this one file with the runner's driver flags and links it with all the runner's aarch64
# objects but its driver (ienet_lce_runner.o): seconds, not a second build. A file of its
# own, not rules in that Makefile, because the runner's build key hashes the Makefile: the
# runner and its cached build stay exactly as they are. The example goes to
# $(BUILD)/example-<key>/ (the key hashes the runner's key, this file and ienet_infer.cc;
# an unchanged one is never rebuilt), with a manifest.json saying how it was built.

EXAMPLE_HERE := $(patsubst %/,%,$(dir $(abspath $(lastword $(MAKEFILE_LIST)))))
EXAMPLE_KEY := $(shell { echo $(notdir $(BUILD)); \
	cat $(EXAMPLE_HERE)/example.mk $(EXAMPLE_HERE)/ienet_infer.cc; } | sha256sum | cut -c1-12)
EXAMPLE := $(BUILD)/example-$(EXAMPLE_KEY)
EXAMPLE_OBJS := $(filter-out %/ienet_lce_runner.o,$(OBJS_aarch64))

.PHONY: example print-example
example: $(EXAMPLE)/manifest.json

print-example:
	@echo $(EXAMPLE)

# Built in $(EXAMPLE).tmp and renamed: a folder with a manifest.json is complete.
$(EXAMPLE)/manifest.json: $(BUILD)/manifest.json
	@command -v $(CXX_aarch64) >/dev/null || { echo "arm-example: $(CXX_aarch64) not found;" \
		"install it: $(INSTALL_HINT)" >&2; exit 1; }
	@exec 9>$(CACHE)/.lock && flock 9 && \
	if [ -f $@ ]; then exit 0; fi && \
	start=$$(date +%s%N) && tmp=$(EXAMPLE).tmp && rm -rf $$tmp && mkdir -p $$tmp/aarch64 && \
	echo "CXX aarch64 ienet_infer" && \
	$(NICE) $(CXX_aarch64) $(CXXFLAGS) -Wall -Wextra $(SYSTEM_INCLUDES) \
		-c $(EXAMPLE_HERE)/ienet_infer.cc -o $$tmp/aarch64/ienet_infer.o && \
	echo "LINK aarch64 ienet_infer" && \
	$(NICE) $(CXX_aarch64) $$tmp/aarch64/ienet_infer.o $(EXAMPLE_OBJS) \
		-o $$tmp/aarch64/ienet_infer $(LDFLAGS) && \
	ms=$$(( ($$(date +%s%N) - start) / 1000000 )) && \
	{ printf '{\n  "key": "%s",\n  "runtime": "%s",\n' $(EXAMPLE_KEY) $(notdir $(BUILD)); \
	  printf '  "source": "converters/cpp/ienet_infer.cc",\n  "source_sha256": "%s",\n' \
		$$(sha256sum $(EXAMPLE_HERE)/ienet_infer.cc | cut -c1-64); \
	  printf '  "compiler": "%s",\n' "$$($(CXX_aarch64) --version | head -n 1)"; \
	  printf '  "compile_flags": "%s",\n' "$(CXXFLAGS) -Wall -Wextra"; \
	  printf '  "linked_with": "ienet_infer.o and the %s objects of ../aarch64/obj but' \
		$(words $(EXAMPLE_OBJS)); \
	  printf ' ienet_lce_runner.o, %s",\n' "$(LDFLAGS)"; \
	  printf '  "build_seconds": %d.%03d,\n' $$((ms / 1000)) $$((ms % 1000)); \
	  printf '  "example": {"aarch64": "aarch64/ienet_infer"}\n}\n'; \
	} > $$tmp/manifest.json && \
	rm -rf $(EXAMPLE) && mv $$tmp $(EXAMPLE) && \
	echo "arm-example: built in $$((ms / 1000)).$$((ms % 1000 / 100)) s:" \
		"$(EXAMPLE)/aarch64/ienet_infer"
