"""Standalone RS-IMLE trainer (Vashist et al., ECCV 2024) whose generator is RTM or MLP mapper + decoder."""
