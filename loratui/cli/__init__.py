"""The ``loratui`` command: ``main`` parses the line and hands it to a subcommand.

    loratui [CONFIG] [--set section.key=value …]     open the app on a config
    loratui demo [--dir DIR] [--headless]            build the demo workspace and train on it
    loratui train CONFIG [--set …] [--detach]        train without the app
    loratui resume RUN_DIR [--detach]                continue a stopped or interrupted run
    loratui check CONFIG [--set …] [--format json]   the guide's advice on a config, before renting
    loratui runs [DIR …] [--format json]             every run: state, steps, last loss, output
    loratui attach [RUN]                             open the app on a run (the newest live one)
    loratui dataset scan DIR [--format json]         what will go wrong with a dataset folder (changes nothing)
    loratui inspect FILE… [--tags N] [--format json]  what is inside a LoRA (any kohya-compatible trainer)
    loratui export CONFIG --to sd-scripts DIR        the same training as sd-scripts files and a command line
    loratui import FILE [--out loratui.toml]         an sd-scripts or LoRA_Easy config as a loratui config
    loratui serve [CONFIG] [--port N]                the app in a browser tab (listens on 127.0.0.1)

Every problem with the input is printed as one line naming the file or setting, and the exit
status is non-zero; nothing is written until the config and the files it names check out.
"""

from loratui.cli.main import main

__all__ = ["main"]
