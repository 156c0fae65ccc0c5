"""The benchmarks (see docs/campaign.md): scripts that measure and write JSON results into
benchmarks/results/, and `make_docs.py`, which renders docs/results.md from them. Run them as
scripts (`python benchmarks/campaign.py`) or as modules (`python -m benchmarks.campaign`)."""
