from setuptools import setup

setup()


# Refresh Twisted's plugin cache so `twistd --help` lists our plugins at once.
try:
    from twisted.plugin import IPlugin, getPlugins

    list(getPlugins(IPlugin))
except Exception:
    pass
