# Shortcuts for the scripts; the scripts are the real entry points (README "Set-up on a fresh machine"; docs/development.md).
.PHONY: run test test-fast test-image test-chart gen

# The service on loopback (starts a sandboxed engine when no daemon answers).
run:
	scripts/run

# The whole suite, as CI runs it (lint, types, generated code, every test).
test:
	scripts/test

# Everything but the tests that need the sandboxed engine.
test-fast:
	scripts/test -m "not integration"

# The container image, built and driven for real (slow: makes its own base image).
test-image:
	scripts/test -m image

# The Helm chart: lint, render every ci/ scenario, validate, checkov, rendered output.
test-chart:
	scripts/test -m chart

# Regenerate the Python stubs, OpenAPI document and clients from proto/.
gen:
	scripts/gen-proto
