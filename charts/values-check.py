#!/usr/bin/env python3
"""values.schema.json is a valid draft-07 schema and accepts the chart's own values.yaml.

Usage: values-check.py CHART_DIR
"""

import json
import sys
from pathlib import Path

import jsonschema
import yaml


def main():
    chart = Path(sys.argv[1])
    schema = json.loads((chart / "values.schema.json").read_text())
    jsonschema.Draft7Validator.check_schema(schema)
    values = yaml.safe_load((chart / "values.yaml").read_text())
    errors = sorted(jsonschema.Draft7Validator(schema).iter_errors(values), key=str)
    for e in errors:
        print(f"{'.'.join(map(str, e.absolute_path)) or '<root>'}: {e.message}", file=sys.stderr)
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
