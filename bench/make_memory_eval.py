"""Build a memory-recall evaluation set from Synthetic-Persona-Chat (CC BY 4.0, Google).

    python bench/make_memory_eval.py PATH/TO/test.csv data/eval/persona_memory.jsonl --limit 100

Each persona fact of each speaker becomes a question asked later by that speaker
("What did I tell you about ...?"); its evidence is the turns in which that
speaker says it (content-word overlap with the fact). Category 1: the fact is
stated in one turn; 2: in several. Facts never stated in the conversation are
kept as questions with no evidence (category 3): they are not scored, but the
predictions show what retrieval returns for them.

Several dialogues (``--sessions``, default 4) are chained into one conversation,
one session each, a week apart: about a hundred turns, so that retrieval has
real distractors and recency plays its part.
"""

from __future__ import annotations

import argparse
import csv
import json
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

STOP = set(
    """a an the i im i'm my me mine you your to of in on at for and or but is am are was
were be been being it its this that these those with as by from have has had do does did not no
so very really just like love also about than then there here what who when where why how all
any some one two get got go going can will would should could""".split()
)


def words(text: str) -> set[str]:
    return {w[:6] for w in re.findall(r"[a-z']+", text.lower()) if w not in STOP and len(w) > 2}


def question_for(fact: str) -> str:
    body = fact.strip().rstrip(".!")
    body = re.sub(r"^I\b", "", body).strip()
    body = re.sub(r"\bmy\b", "your", body, flags=re.I)
    return f"Do you remember what I told you: {body}?"


def convert(rows: list[dict[str, str]], index: int, start: datetime) -> dict[str, object]:
    turns: list[dict[str, object]] = []
    questions: list[dict[str, object]] = []
    for session, row in enumerate(rows, 1):
        lines = [line for line in row["Best Generated Conversation"].splitlines() if ":" in line]
        first = len(turns)
        for i, line in enumerate(lines):
            speaker, _, text = line.partition(":")
            time = start + timedelta(days=7 * session, minutes=i)
            turns.append(
                {
                    "id": f"c{index}-s{session}-t{i}",
                    "speaker": speaker.strip(),
                    "text": text.strip(),
                    "session": session,
                    "time": time.isoformat(),
                }
            )
        said = turns[first:]
        for speaker, column in (("User 1", "user 1 personas"), ("User 2", "user 2 personas")):
            for fact in filter(None, (f.strip() for f in row[column].splitlines())):
                need = words(fact)
                if not need:
                    continue
                evidence = [
                    t["id"]
                    for t in said
                    if t["speaker"] == speaker
                    and len(need & words(str(t["text"]))) >= max(1, (len(need) + 1) // 2)
                ]
                category = 3 if not evidence else (1 if len(evidence) == 1 else 2)
                questions.append(
                    {
                        "q": question_for(fact),
                        "answer": fact,
                        "category": category,
                        "evidence": evidence,
                    }
                )
    return {"id": f"spc-{index}", "turns": turns, "questions": questions}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("csv", type=Path)
    parser.add_argument("out", type=Path)
    parser.add_argument("--limit", type=int, default=25, help="conversations to write")
    parser.add_argument("--sessions", type=int, default=4, help="dialogues per conversation")
    args = parser.parse_args()
    start = datetime(2025, 1, 1, tzinfo=UTC)
    with args.csv.open(newline="", encoding="utf-8") as source:
        rows = list(csv.DictReader(source))
    with args.out.open("w") as out:
        for index in range(min(args.limit, len(rows) // args.sessions)):
            chunk = rows[index * args.sessions : (index + 1) * args.sessions]
            out.write(json.dumps(convert(chunk, index, start)) + "\n")
    print(f"wrote {index + 1} conversations to {args.out}")


if __name__ == "__main__":
    main()
