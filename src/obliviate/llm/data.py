"""Question/answer facts keyed by person: the profile generator, the world-knowledge probe,
users' JSONL files, and the forget / retain / never-seen split.

The generator follows TOFU's design: fictitious people (so no pretrained model knows them),
about ten facts each, and for every question a paraphrased answer (same fact, other wording)
and perturbed answers (same wording, wrong fact) from which the truth ratio is computed.
"""

from __future__ import annotations

import json
import math
import random
from dataclasses import dataclass, field
from pathlib import Path

from obliviate.data.dataset import DataError


@dataclass(frozen=True)
class QA:
    """One fact: a question, its answer, and the key of the person it is about.

    ``paraphrased`` states the same fact in other words; ``perturbed`` state wrong facts in the
    paraphrase's wording. Both are optional; metrics that need them skip rows without them.
    """

    question: str
    answer: str
    key: str
    paraphrased: str | None = None
    perturbed: tuple[str, ...] = ()


@dataclass
class LMTask:
    """A forget request against a causal LM: the facts to forget, the facts to keep, facts the
    model never saw (``holdout``, the non-members of membership attacks) and a knowledge probe
    that no request ever touches (``world``). The model is fine-tuned on forget + retain + world."""

    forget: list[QA]
    retain: list[QA]
    holdout: list[QA] = field(default_factory=list)
    world: list[QA] = field(default_factory=list)

    @property
    def train(self) -> list[QA]:
        return [*self.forget, *self.retain, *self.world]

    @property
    def forget_keys(self) -> list[str]:
        return sorted({qa.key for qa in self.forget})

    def corpus(self) -> list[str]:
        """Every text a tokenizer for this task must cover (including the never-seen profiles)."""
        texts: list[str] = []
        for qa in (*self.train, *self.holdout):
            texts += [qa.question, qa.answer, *([qa.paraphrased] if qa.paraphrased else []), *qa.perturbed]
        return texts


# --- the fictitious-profile generator ------------------------------------------------------

FIRST_NAMES = [
    "Ada",
    "Bram",
    "Cleo",
    "Dario",
    "Elin",
    "Faye",
    "Goran",
    "Hana",
    "Ivo",
    "Jora",
    "Kasi",
    "Lior",
    "Mira",
    "Nils",
    "Oona",
    "Pavel",
    "Quin",
    "Rhea",
    "Sami",
    "Tova",
    "Ulla",
    "Vito",
    "Wren",
    "Xena",
    "Yara",
    "Zeno",
    "Alma",
    "Boris",
    "Cyra",
    "Dov",
    "Edda",
    "Finn",
    "Gaia",
    "Hugo",
    "Isla",
    "Jonas",
    "Kira",
    "Leon",
    "Maia",
    "Odo",
]
SYLLABLES = [
    "ka",
    "lo",
    "mi",
    "ne",
    "ru",
    "sa",
    "te",
    "vi",
    "zo",
    "ba",
    "de",
    "fi",
    "go",
    "hu",
    "ja",
    "ke",
    "li",
    "mo",
    "nu",
    "pe",
    "ri",
    "so",
    "tu",
    "va",
]

# attribute -> (question template, answer templates, values). Each fact is trained in one wording
# and paraphrased in another; every wording is trained on for some people, so a model that knows
# a fact can recognise it in any of them (TOFU's paraphrases come from a model that reads English).
ATTRIBUTES: dict[str, tuple[str, tuple[str, ...], tuple[str, ...]]] = {
    "city": (
        "Where was {name} born?",
        ("{name} was born in {v}.", "{name} comes from {v}.", "The birthplace of {name} is {v}."),
        tuple(
            [
                "Arvento",
                "Belmora",
                "Castellin",
                "Dunmere",
                "Estravo",
                "Falkreach",
                "Granholm",
                "Halvik",
                "Istrana",
                "Jorvale",
                "Kestrel",
                "Lunaria",
                "Morvast",
                "Norhaven",
                "Ostrava",
                "Pellmar",
            ]
        ),
    ),
    "job": (
        "What does {name} do for a living?",
        ("{name} works as a {v}.", "{name} earns a living as a {v}.", "By profession {name} is a {v}."),
        tuple(
            [
                "baker",
                "surgeon",
                "pilot",
                "carpenter",
                "librarian",
                "chemist",
                "sculptor",
                "farmer",
                "lawyer",
                "jeweller",
                "glassblower",
                "cartographer",
                "astronomer",
                "tailor",
            ]
        ),
    ),
    "genre": (
        "What kind of books does {name} write?",
        ("{name} writes {v} novels.", "{name} is known for {v} novels.", "The novels of {name} are {v} stories."),
        tuple(
            [
                "mystery",
                "fantasy",
                "romance",
                "horror",
                "historical",
                "satirical",
                "adventure",
                "gothic",
                "pastoral",
                "dystopian",
                "comic",
                "nautical",
            ]
        ),
    ),
    "pet": (
        "Which pet does {name} keep?",
        ("{name} keeps a {v} at home.", "{name} owns a {v}.", "At home {name} looks after a {v}."),
        tuple(
            [
                "parrot",
                "tortoise",
                "ferret",
                "goldfish",
                "beagle",
                "hamster",
                "iguana",
                "rabbit",
                "canary",
                "poodle",
                "gecko",
                "lizard",
            ]
        ),
    ),
    "colour": (
        "What is the favourite colour of {name}?",
        ("{name} likes {v} best.", "The colour {name} loves most is {v}.", "Of all colours {name} prefers {v}."),
        tuple(
            [
                "crimson",
                "amber",
                "teal",
                "violet",
                "ochre",
                "indigo",
                "scarlet",
                "olive",
                "turquoise",
                "magenta",
                "silver",
                "maroon",
            ]
        ),
    ),
    "award": (
        "Which award did {name} win?",
        ("{name} won the {v} Prize.", "{name} received the {v} Prize.", "The prize given to {name} was the {v} Prize."),
        tuple(
            [
                "Aurel",
                "Brightwater",
                "Corvin",
                "Delmont",
                "Everly",
                "Fairbourne",
                "Galloway",
                "Harrowgate",
                "Ingram",
                "Juniper",
                "Kingsley",
                "Lockhart",
            ]
        ),
    ),
    "instrument": (
        "Which instrument does {name} play?",
        ("{name} plays the {v}.", "{name} performs on the {v}.", "The instrument of {name} is the {v}."),
        tuple(
            [
                "cello",
                "harp",
                "oboe",
                "violin",
                "flute",
                "trumpet",
                "banjo",
                "clarinet",
                "accordion",
                "piano",
                "bassoon",
                "mandolin",
            ]
        ),
    ),
    "food": (
        "What is the favourite dish of {name}?",
        ("{name} loves eating {v}.", "{name} always orders {v}.", "The dish {name} enjoys most is {v}."),
        tuple(
            [
                "risotto",
                "dumplings",
                "paella",
                "goulash",
                "lasagne",
                "curry",
                "ramen",
                "moussaka",
                "pierogi",
                "tacos",
                "falafel",
                "gnocchi",
            ]
        ),
    ),
    "year": (
        "In which year was {name} born?",
        ("{name} was born in {v}.", "The birth year of {name} is {v}.", "{name} came into the world in {v}."),
        tuple(str(y) for y in range(1950, 1962)),
    ),
    "sport": (
        "Which sport does {name} practise?",
        ("{name} practises {v}.", "{name} spends weekends on {v}.", "In free time {name} enjoys {v}."),
        tuple(
            [
                "fencing",
                "rowing",
                "archery",
                "climbing",
                "sailing",
                "judo",
                "curling",
                "cycling",
                "skiing",
                "tennis",
                "squash",
                "hurling",
            ]
        ),
    ),
}
N_PERTURBED = 4


def _surnames(count: int, rng: random.Random) -> list[str]:
    """Distinct invented surnames of three syllables (the person's key and identity)."""
    names: set[str] = set()
    while len(names) < count:
        names.add("".join(rng.choice(SYLLABLES) for _ in range(3)).capitalize())
    ordered = sorted(names)  # sets iterate in hash order, which changes between processes
    rng.shuffle(ordered)
    return ordered


def _fact(question: str, key: str, wordings: tuple[str, ...], value: str, wrong: list[str], rng: random.Random) -> QA:
    """A fact trained in one wording, paraphrased in another, perturbed in the paraphrase's."""
    said, paraphrase = rng.sample(wordings, 2)
    return QA(
        question, said.format(v=value), key, paraphrase.format(v=value), tuple(paraphrase.format(v=w) for w in wrong)
    )


def _facts(name: str, key: str, rng: random.Random) -> list[QA]:
    facts = []
    for question, answers, values in ATTRIBUTES.values():
        value = rng.choice(values)
        wrong = rng.sample([v for v in values if v != value], N_PERTURBED)
        wordings = tuple(a.replace("{name}", name) for a in answers)
        facts.append(_fact(question.format(name=name), key, wordings, value, wrong, rng))
    return facts


def generate_profiles(n_people: int, seed: int = 0) -> dict[str, list[QA]]:
    """``n_people`` fictitious people, ten facts each, keyed by a person id (``p0007``).

    Deterministic in ``(n_people, seed)``; person ``i`` is the same for every larger ``n_people``
    only through the seed, so callers should generate the whole population at once.
    """
    rng = random.Random(seed)
    surnames = _surnames(n_people, rng)
    profiles = {}
    for i, surname in enumerate(surnames):
        key = f"p{i:04d}"
        profiles[key] = _facts(f"{rng.choice(FIRST_NAMES)} {surname}", key, rng)
    return profiles


NUMBER_WORDS = [
    "zero",
    "one",
    "two",
    "three",
    "four",
    "five",
    "six",
    "seven",
    "eight",
    "nine",
    "ten",
    "eleven",
    "twelve",
]


def world_knowledge() -> list[QA]:
    """Fixed facts no request ever forgets: additions of small numbers, in words.

    Disjoint from the profiles (no person, no profile value), so a drop on this probe measures
    collateral damage to general knowledge, like TOFU's world-facts set, whose "paraphrased"
    answer is the answer itself and whose perturbed answers change the number.
    """
    rng = random.Random(0)
    facts = []
    for a in range(1, 7):
        for b in range(1, 7):
            total = a + b
            wrong = [NUMBER_WORDS[t] for t in (total - 2, total - 1, total + 1, total + 2) if 0 <= t <= 12]
            x, y = NUMBER_WORDS[a], NUMBER_WORDS[b]
            said = rng.choice((f"{x.capitalize()} plus {y} is {{v}}.", f"The sum of {x} and {y} is {{v}}."))
            answer = said.format(v=NUMBER_WORDS[total])
            facts.append(QA(f"What is {x} plus {y}?", answer, "world", answer, tuple(said.format(v=w) for w in wrong)))
    return facts


def profile_task(fraction: float, n_people: int = 200, seed: int = 0, holdout: int | None = None) -> LMTask:
    """Forget ``fraction`` (0.01, 0.05, 0.10 in TOFU) of ``n_people`` generated profiles.

    Forget sets are nested (the 1% set lies inside the 5% set, which lies inside the 10% set),
    and ``holdout`` extra profiles (default: as many as 10% of the people) are never trained on:
    they are the non-members of the membership attacks.
    """
    if not 0 < fraction < 1:
        raise DataError(f"forget fraction must lie in (0, 1), got {fraction}")
    holdout = max(1, math.ceil(0.1 * n_people)) if holdout is None else holdout
    profiles = generate_profiles(n_people + holdout, seed)
    keys = list(profiles)
    trained, unseen = keys[:n_people], keys[n_people:]
    order = random.Random(seed + 1).sample(trained, len(trained))
    forget_keys = set(order[: max(1, math.ceil(fraction * n_people))])
    return LMTask(
        forget=[qa for k in trained if k in forget_keys for qa in profiles[k]],
        retain=[qa for k in trained if k not in forget_keys for qa in profiles[k]],
        holdout=[qa for k in unseen for qa in profiles[k]],
        world=world_knowledge(),
    )


# --- users' own data -----------------------------------------------------------------------


def _parse_row(row: object, where: str) -> QA:
    if not isinstance(row, dict):
        raise DataError(f"{where}: expected a JSON object, got {type(row).__name__}")
    for name in ("question", "answer", "key"):
        if not isinstance(row.get(name), str | int) or str(row[name]).strip() == "":
            raise DataError(f"{where}: field {name!r} is missing or empty")
    paraphrased = row.get("paraphrased")
    perturbed = row.get("perturbed", [])
    if paraphrased is not None and not isinstance(paraphrased, str):
        raise DataError(f"{where}: field 'paraphrased' must be a string")
    if not isinstance(perturbed, list) or not all(isinstance(p, str) for p in perturbed):
        raise DataError(f"{where}: field 'perturbed' must be a list of strings")
    if perturbed and paraphrased is None:
        raise DataError(f"{where}: 'perturbed' answers need a 'paraphrased' answer for the truth ratio")
    unknown = set(row) - {"question", "answer", "key", "paraphrased", "perturbed"}
    if unknown:
        raise DataError(f"{where}: unknown field(s) {', '.join(sorted(unknown))}")
    return QA(str(row["question"]), str(row["answer"]), str(row["key"]), paraphrased, tuple(perturbed))


def load_jsonl(path: str | Path) -> list[QA]:
    """Read question/answer/key rows (optional ``paraphrased`` and ``perturbed`` list) from JSONL."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"no such file: {path}")
    rows = []
    with path.open(encoding="utf-8") as fh:
        for number, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                raise DataError(f"{path}:{number}: not valid JSON ({exc.msg})") from None
            rows.append(_parse_row(row, f"{path}:{number}"))
    if not rows:
        raise DataError(f"{path}: no rows")
    return rows


def task_from_keys(rows: list[QA], forget_keys: list[str], holdout_keys: list[str] = ()) -> LMTask:
    """Split users' rows by key: the forget keys' rows, the never-trained ``holdout_keys`` rows
    (for membership attacks; may be empty), and everything else as retain."""
    known = {qa.key for qa in rows}
    missing = sorted(set(forget_keys) - known) + sorted(set(holdout_keys) - known)
    if missing:
        raise DataError(f"key(s) not in the data: {', '.join(missing[:5])}")
    if set(forget_keys) & set(holdout_keys):
        raise DataError("a key cannot be both forgotten and held out")
    forget, hold = set(forget_keys), set(holdout_keys)
    return LMTask(
        forget=[qa for qa in rows if qa.key in forget],
        retain=[qa for qa in rows if qa.key not in forget | hold],
        holdout=[qa for qa in rows if qa.key in hold],
    )
