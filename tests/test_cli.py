"""The ``rewarddance`` command line: only the chosen command's module is imported, and help lines are whole
sentences."""

from __future__ import annotations

import subprocess
import sys

from rewarddance.cli import COMMANDS, _docstring, _summary, build_parser


def test_summaries_are_whole_first_sentences():
    assert _summary("Serve rewards from a\nrepository (HTTP and gRPC). More text.\n\nA paragraph.") == (
        "Serve rewards from a repository (HTTP and gRPC)."
    )
    assert _summary("No full stop in the first paragraph\n\nSecond.") == "No full stop in the first paragraph"
    for commands in COMMANDS.values():
        for module in commands.values():
            summary = _summary(_docstring(module))
            assert summary.endswith((".", "!", "?")) and len(summary) > 20, (module, summary)


def test_only_the_chosen_command_is_imported():
    """A serve-only install has no pandas, scipy or torch: ``rewarddance serve`` must not import them to parse."""
    code = (
        "import sys\n"
        "from rewarddance.cli import build_parser\n"
        "args = build_parser(['serve', '--repo', 'r']).parse_args(['serve', '--repo', 'r'])\n"
        "heavy = ('pandas', 'scipy', 'torch', 'rewarddance_trainer.data.validate', 'rewarddance_exporter.deploy')\n"
        "print(args.repo, sorted(m for m in heavy if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split(maxsplit=1) == ["r", "[]\n"]


def test_help_lists_every_command_without_importing_them(capsys):
    parser = build_parser([])
    help_text = parser.format_help()
    for group in COMMANDS:
        assert group in help_text
    assert "Deploy a trained reward run: export it, gate it against the serving version, publish, reload the" in (
        " ".join(help_text.split())
    )
