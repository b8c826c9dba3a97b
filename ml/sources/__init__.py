"""The sources stage: turns files of the repository into chunks."""
