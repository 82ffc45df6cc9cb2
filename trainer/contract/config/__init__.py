"""The training config: its schema and checks (``schema``), its TOML file and ``--set`` overrides
(``toml_io``), the messages its checks give (``messages``), and the README's table of every key
(``reference``, run as ``python -m trainer.contract.config.reference --write README.md``).
"""
