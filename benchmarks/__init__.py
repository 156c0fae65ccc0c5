"""The benchmarks (see docs/campaign.md): scripts that measure and write JSON results into
benchmarks/results/, each with the `section` of docs/results.md that renders its results,
and `make_docs.py`, which lays those sections out. Run them as scripts
(`python benchmarks/campaign.py`) or as modules (`python -m benchmarks.campaign`)."""
