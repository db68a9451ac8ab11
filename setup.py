from setuptools import setup

setup()


# Refresh Twisted's plugin cache so `twistd --help` lists our plugins at once.
try:
    from twisted.plugin import IPlugin, getPlugins

    list(getPlugins(IPlugin))
except Exception as e:  # a refresh failing must not fail the install
    print(f"note: Twisted plugin cache not refreshed: {e}")
