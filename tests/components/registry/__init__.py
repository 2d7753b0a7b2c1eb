"""Unit tests of the components of one stage, one file per component."""
