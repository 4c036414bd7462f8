"""recli: explore users' interests with language-model representations, from the terminal."""

__version__ = "0.1.0"
