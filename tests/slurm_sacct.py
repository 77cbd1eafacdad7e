"""Stand-in for ``sacct`` on the test cluster, which runs without an accounting database.

Answers the queries submitit and ``jobs/status.py`` make (``-j ID`` repeated or comma
separated; the columns are always JobID|State|NodeList, ``--parsable2`` style) from the
controller's memory (``squeue --states=all``), where finished jobs stay for MinJobAge seconds.
"""

import argparse
import subprocess
import sys


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("-j", "--jobs", action="append", default=[])
    parser.add_argument("-n", "--noheader", action="store_true")
    args, _ = parser.parse_known_args(argv)  # -o, --parsable2, -X: the output format is fixed
    if not args.noheader:
        print("JobID|State|NodeList")
    ids = ",".join(args.jobs)
    if ids:
        # -r: one line per array task, 123_4
        out = subprocess.run(["squeue", "-h", "-r", "--states=all", "-j", ids, "-o", "%i|%T|%N"],
                             capture_output=True, text=True).stdout
        for line in out.splitlines():
            print(line if not line.endswith("|") else line + "None assigned")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
