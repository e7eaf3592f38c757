"""The analytics views: one `select` per `<view name>.sql` file, shipped as package data."""
