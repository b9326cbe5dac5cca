"""Developer tools of the ANI project (not part of the installed codec)."""
