"""The command line: `lusd edit`/`info`, the options every command shares, the bad-input sweep."""
