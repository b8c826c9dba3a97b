"""Load tests: the Locust persona mix and the threshold gate `make loadtest` runs."""
