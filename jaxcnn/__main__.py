"""`python -m jaxcnn`: the commands of jaxcnn, one line each (`python -m jaxcnn.COMMAND --help`)."""

import ast
import importlib.util
import sys

# The command modules, in the order a user meets them.
COMMANDS = (
    "train",
    "prepare",
    "predict",
    "export",
    "features",
    "neighbors",
    "visualize",
    "summary",
    "bench",
)


def summary_line(command: str) -> str:
    """The first line of a command's module docstring, read without importing it."""
    spec = importlib.util.find_spec(f"jaxcnn.{command}")
    with open(spec.origin, encoding="utf-8") as f:
        doc = ast.get_docstring(ast.parse(f.read())) or ""
    return doc.splitlines()[0] if doc else ""


def main() -> int:
    print("jaxcnn commands (python -m jaxcnn.COMMAND --help for each one's flags):\n")
    width = max(map(len, COMMANDS))
    for command in COMMANDS:
        print(f"  {command:<{width}}  {summary_line(command)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
