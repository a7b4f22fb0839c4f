"""Running the `tnn-train` command line in-process from tests."""


def run_train_cli(argv, capsys):
    """``tnn-train ARGV`` in this process: (exit code, stdout, stderr) as captured by ``capsys``."""
    from tnn_ros.train.cli import main

    code = main(argv)
    captured = capsys.readouterr()
    return code, captured.out, captured.err
