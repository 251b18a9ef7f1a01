"""Tests that drive real servers (influxd, promtool, collectd, Telegraf) on 127.0.0.1."""
