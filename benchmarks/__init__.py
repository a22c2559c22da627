"""The template's own benchmark: every client package and transport side by side (`compare`)."""
