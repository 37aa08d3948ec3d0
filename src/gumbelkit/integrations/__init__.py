"""Adapters to other libraries; each subpackage imports its library only when used."""
