"""The declarative (``custom``) preset: fields from columns, constants or expressions."""
