"""Response: kill, freeze and thaw of a session tree, cgroups, the kernel enforcement maps
and their policy. Imports collector and detectors (for the config), never service."""
