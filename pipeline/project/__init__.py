"""A labelloop project on disk: its config, workspace folder, the opened ``Project``, the
workspace lock and where its Label Studio is. Imports no round step."""
