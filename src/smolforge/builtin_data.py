"""The bundled offline chat dataset, generated deterministically.

The tiny preset must train offline, so the package ships a few hundred chats in
`resources/builtin_chat.jsonl`. This module is the generator of that file (a test checks
the shipped file equals its output), and benchmarks use it to make larger samples with the
same long-tailed length spread: many short answers, some multi-paragraph ones, a few
multi-turn conversations and system prompts.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

BUILTIN_NAME = "smolforge built-in chats"  # a display name, not a Hub id: the data ships with smolforge
BUILTIN_PATH = Path(__file__).parent / "resources" / "builtin_chat.jsonl"
BUILTIN_ROWS = 600
BUILTIN_SEED = 1234
PROMPTS_NAME = "smolforge built-in verifiable prompts"  # GRPO's bundled data: questions with checkable answers
PROMPTS_PATH = Path(__file__).parent / "resources" / "builtin_prompts.jsonl"
SUM_FACTS = 10  # sums and differences asked about, next to the 20 capitals
PHRASINGS = 4  # each fact is asked in four ways: a held-out prompt asks a fact training asked differently
PROMPTS_ROWS = 120
ANSWERS_NAME = "smolforge built-in unreliable answers"  # the same questions, each answered once right, once wrong
ANSWERS_PATH = Path(__file__).parent / "resources" / "builtin_answers.jsonl"
ANSWERS_ROWS = 240
# The bundled datasets by data.name: chats (SFT), prompts with answers a reward can check (GRPO), and those
# questions with half their answers wrong (the SFT that GRPO then corrects, in the tiny-grpo preset's chain).
BUILTIN_FILES = {"builtin": BUILTIN_PATH, "builtin-prompts": PROMPTS_PATH, "builtin-answers": ANSWERS_PATH}
BUILTIN_NAMES = {"builtin": BUILTIN_NAME, "builtin-prompts": PROMPTS_NAME, "builtin-answers": ANSWERS_NAME}

COUNTRIES = {
    "France": "Paris", "Spain": "Madrid", "Italy": "Rome", "Germany": "Berlin",
    "Portugal": "Lisbon", "Japan": "Tokyo", "Canada": "Ottawa", "Kenya": "Nairobi",
    "Peru": "Lima", "Norway": "Oslo", "Egypt": "Cairo", "India": "New Delhi",
    "Chile": "Santiago", "Greece": "Athens", "Poland": "Warsaw", "Ireland": "Dublin",
    "Mexico": "Mexico City", "Brazil": "Brasilia", "Australia": "Canberra", "Sweden": "Stockholm",
}

FRUITS = ["apple", "banana", "cherry", "grape", "lemon", "mango", "orange", "peach", "pear", "plum",
          "kiwi", "melon", "apricot", "fig", "lime"]
ANIMALS = ["cat", "dog", "horse", "rabbit", "fox", "owl", "whale", "tiger", "otter", "eagle",
           "goat", "bear", "wolf", "heron", "seal"]
COLORS = ["red", "blue", "green", "yellow", "purple", "orange", "black", "white", "grey", "brown"]
WORDS = ["river", "garden", "window", "planet", "candle", "forest", "silver", "bridge", "pencil",
         "harbor", "meadow", "lantern", "thunder", "compass", "marble", "velvet"]

TOPICS: dict[str, list[str]] = {
    "the water cycle": [
        "Water evaporates from oceans, lakes and rivers when the sun warms it.",
        "The warm, moist air rises and cools as it climbs higher into the atmosphere.",
        "As it cools, the vapour condenses into tiny droplets that form clouds.",
        "When the droplets grow heavy enough, they fall back to the ground as rain or snow.",
        "Some of that water soaks into the soil and becomes groundwater.",
        "The rest runs off into streams and rivers that carry it back to the sea.",
        "Plants also return water to the air through their leaves, a process called transpiration.",
        "The whole cycle is driven by energy from the sun and by gravity.",
        "Because of this cycle, the same water has been moving around the planet for billions of years.",
        "Changes in temperature can speed the cycle up or slow it down in different regions.",
    ],
    "photosynthesis": [
        "Photosynthesis is the process plants use to turn light into chemical energy.",
        "It happens mostly in the leaves, inside small structures called chloroplasts.",
        "Chlorophyll, the green pigment, absorbs red and blue light and reflects green light.",
        "The plant takes in carbon dioxide from the air through tiny pores called stomata.",
        "Water is drawn up from the roots through the stem to the leaves.",
        "Using the energy of light, the plant combines water and carbon dioxide into sugar.",
        "Oxygen is released as a by-product, which is the oxygen animals breathe.",
        "The sugar is used for growth or stored as starch for later.",
        "Without photosynthesis, almost every food chain on Earth would collapse.",
    ],
    "how a bicycle stays upright": [
        "A moving bicycle stays upright mostly because the rider keeps steering under the fall.",
        "When the bike leans to one side, the rider turns the front wheel slightly toward that side.",
        "This moves the wheels back under the centre of mass and corrects the lean.",
        "The geometry of the front fork also helps, because the wheel tends to steer itself into a lean.",
        "The spinning wheels add a small gyroscopic effect, but it is not the main reason.",
        "At very low speed these corrections are harder, which is why slow riding feels wobbly.",
        "Experienced riders make these small steering corrections without thinking about them.",
    ],
    "saving money": [
        "A simple way to start saving is to decide on a fixed amount to set aside each month.",
        "Moving that amount to a separate account on payday makes it harder to spend by accident.",
        "Tracking expenses for a few weeks shows where money actually goes.",
        "Small regular costs, like subscriptions, often add up to more than people expect.",
        "An emergency fund of a few months of expenses protects against surprises.",
        "Paying off high-interest debt first usually saves more than any investment earns.",
        "Setting a clear goal, such as a holiday or a deposit, keeps motivation high.",
        "Reviewing the budget every few months helps adjust it as life changes.",
    ],
    "learning a new language": [
        "Learning a little every day works better than studying for hours once a week.",
        "Start with the most common words, because a few hundred of them cover most conversations.",
        "Listening to native speakers trains the ear to recognise sounds and rhythm.",
        "Speaking early, even with mistakes, builds confidence faster than silent study.",
        "Flashcards with spaced repetition help move vocabulary into long-term memory.",
        "Reading simple stories shows how grammar works in real sentences.",
        "Finding a conversation partner makes practice regular and more fun.",
        "Mistakes are a normal part of the process and a sign that you are trying.",
        "After a few months, thinking directly in the new language starts to feel natural.",
    ],
    "how vaccines work": [
        "Vaccines train the immune system to recognise a germ without causing the disease.",
        "They contain a harmless piece of the germ, a weakened form of it, or instructions to make a part of it.",
        "The immune system reacts by producing antibodies and memory cells.",
        "If the real germ arrives later, the memory cells recognise it and respond quickly.",
        "This fast response usually stops the infection before it becomes serious.",
        "Some vaccines need booster doses to keep the memory strong.",
        "When many people are vaccinated, the germ has fewer chances to spread.",
    ],
    "why the sky is blue": [
        "Sunlight contains all the colours of the rainbow mixed together.",
        "When sunlight enters the atmosphere, it collides with molecules of nitrogen and oxygen.",
        "Short wavelengths, like blue, are scattered much more strongly than long ones, like red.",
        "This scattered blue light reaches our eyes from every direction of the sky.",
        "At sunrise and sunset the light travels through more air, so most blue is scattered away.",
        "That is why the sky near the horizon often looks orange or red at those times.",
    ],
    "writing clear emails": [
        "A clear email starts with a subject line that says what the message is about.",
        "Put the most important point or request in the first two sentences.",
        "Keep paragraphs short so the reader can scan them quickly.",
        "If you need an answer, ask a direct question and say by when.",
        "Lists help when there are several steps or options.",
        "Read the email once before sending to remove words that add nothing.",
        "A friendly closing line keeps the tone warm without making the message longer.",
    ],
    "how computers store numbers": [
        "Computers store numbers as patterns of bits, each bit being a zero or a one.",
        "Whole numbers use binary, where each position is worth twice the one to its right.",
        "Eight bits make a byte, which can hold values from zero to two hundred and fifty-five.",
        "Negative numbers are usually stored with a method called two's complement.",
        "Numbers with fractions use floating point, which keeps a sign, an exponent and a fraction.",
        "Floating point cannot represent every decimal exactly, which causes small rounding errors.",
        "Using more bits gives a larger range and more precision, at the cost of memory.",
        "Machine learning often uses sixteen-bit formats to save memory and time.",
    ],
    "growing tomatoes": [
        "Tomatoes need at least six hours of direct sunlight each day.",
        "Plant them in rich soil that drains well and has plenty of compost.",
        "Water deeply at the base of the plant rather than on the leaves.",
        "A stake or cage keeps the stems off the ground as the fruit gets heavy.",
        "Pinching off small side shoots helps the plant put energy into fruit.",
        "Feeding with a balanced fertiliser every few weeks supports steady growth.",
        "Pick the tomatoes when they are fully coloured and slightly soft to the touch.",
    ],
}

STORY_NAMES = ["Mira", "Tom", "Aiko", "Luca", "Nadia", "Sam", "Ines", "Omar", "Lena", "Jon"]
STORY_PLACES = ["a quiet harbor town", "a village in the mountains", "a busy city market",
                "an old lighthouse", "a small island", "a farm by the river"]
STORY_EVENTS = [
    "One morning, {name} found a {obj} that nobody had seen before.",
    "{name} decided to follow the path that led past the {obj}.",
    "A strong wind carried the {obj} away, and {name} ran after it.",
    "The neighbours gathered to look at the {obj} and share their guesses.",
    "{name} asked the oldest person in town what the {obj} might mean.",
    "By noon, the {obj} had started to glow softly in the sun.",
    "{name} wrote everything down in a notebook, so nothing would be forgotten.",
    "A child suggested that the {obj} was a gift from the sea.",
    "That evening, {name} placed the {obj} on the window sill and waited.",
    "In the end, {name} understood that the {obj} had simply been lost by a traveller.",
    "{name} returned the {obj} and made a new friend along the way.",
    "Years later, people in {place} still told the story of the {obj}.",
]

SYSTEM_PROMPTS = [
    "You are a helpful assistant. Answer clearly and briefly.",
    "You are a patient teacher who explains things step by step.",
    "You are a friendly assistant. Keep a warm tone.",
]

NUMBER_WORDS = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten"]


def _arithmetic(rng: random.Random) -> list[dict]:
    a, b = rng.randint(2, 99), rng.randint(2, 99)
    op = rng.choice(["plus", "minus", "times"])
    result = {"plus": a + b, "minus": a - b, "times": a * b}[op]
    q = rng.choice([f"What is {a} {op} {b}?", f"Compute {a} {op} {b}.", f"How much is {a} {op} {b}?"])
    return [{"role": "user", "content": q}, {"role": "assistant", "content": f"{a} {op} {b} is {result}."}]


def _capital(rng: random.Random) -> list[dict]:
    country = rng.choice(sorted(COUNTRIES))
    q = rng.choice([f"What is the capital of {country}?", f"Which city is the capital of {country}?"])
    return [{"role": "user", "content": q},
            {"role": "assistant", "content": f"The capital of {country} is {COUNTRIES[country]}."}]


def _word_task(rng: random.Random) -> list[dict]:
    word = rng.choice(WORDS)
    kind = rng.choice(["reverse", "upper", "count", "spell"])
    if kind == "reverse":
        return [{"role": "user", "content": f"Reverse the word '{word}'."},
                {"role": "assistant", "content": f"'{word}' reversed is '{word[::-1]}'."}]
    if kind == "upper":
        return [{"role": "user", "content": f"Write '{word}' in capital letters."},
                {"role": "assistant", "content": word.upper()}]
    if kind == "count":
        return [{"role": "user", "content": f"How many letters are in the word '{word}'?"},
                {"role": "assistant", "content": f"The word '{word}' has {len(word)} letters."}]
    return [{"role": "user", "content": f"Spell '{word}' letter by letter."},
            {"role": "assistant", "content": "-".join(word.upper())}]


def _listing(rng: random.Random) -> list[dict]:
    pool_name, pool = rng.choice([("fruits", FRUITS), ("animals", ANIMALS), ("colors", COLORS)])
    n = rng.randint(2, min(8, len(pool)))
    items = rng.sample(pool, n)
    word = NUMBER_WORDS[n] if n < len(NUMBER_WORDS) else str(n)
    body = "\n".join(f"{i + 1}. {item.capitalize()}" for i, item in enumerate(items))
    return [{"role": "user", "content": f"List {word} {pool_name}."},
            {"role": "assistant", "content": f"Here are {word} {pool_name}:\n{body}"}]


def _long_tail_count(rng: random.Random, low: int, high: int) -> int:
    """Mostly small counts, sometimes the whole range: a long tail, like real chat answers."""
    return min(high, low + int(rng.expovariate(1 / 2.2)))


def _explain(rng: random.Random) -> list[dict]:
    topic = rng.choice(sorted(TOPICS))
    sentences = TOPICS[topic]
    n = _long_tail_count(rng, 1, len(sentences))
    q = rng.choice([f"Explain {topic}.", f"Can you tell me about {topic}?", f"Briefly, {topic}?",
                    f"I would like to understand {topic}. Can you explain it in detail?"])
    answer = " ".join(sentences[:n])
    if n >= 6 and rng.random() < 0.7:
        half = n // 2
        answer = " ".join(sentences[:half]) + "\n\n" + " ".join(sentences[half:n])
    return [{"role": "user", "content": q}, {"role": "assistant", "content": answer}]


def _story(rng: random.Random) -> list[dict]:
    name, place, obj = rng.choice(STORY_NAMES), rng.choice(STORY_PLACES), rng.choice(WORDS)
    n = _long_tail_count(rng, 2, len(STORY_EVENTS))
    events = [e.format(name=name, obj=obj, place=place) for e in STORY_EVENTS[:n]]
    opening = f"Once upon a time, in {place}, there lived someone called {name}."
    return [{"role": "user", "content": f"Tell me a short story about {name} and a {obj}."},
            {"role": "assistant", "content": opening + " " + " ".join(events)}]


def _multi_turn(rng: random.Random) -> list[dict]:
    first = rng.choice([_capital, _arithmetic, _explain])(rng)
    second = rng.choice([_word_task, _listing, _capital, _arithmetic])(rng)
    third = [{"role": "user", "content": "Thank you!"},
             {"role": "assistant", "content": rng.choice(["You're welcome!", "Happy to help.",
                                                          "Glad I could help. Anything else?"])}]
    return first + second + (third if rng.random() < 0.5 else [])


FAMILIES = [
    (_arithmetic, 0.17), (_capital, 0.15), (_word_task, 0.12), (_listing, 0.12),
    (_explain, 0.22), (_story, 0.12), (_multi_turn, 0.10),
]


def generate(n: int = BUILTIN_ROWS, seed: int = BUILTIN_SEED) -> list[dict]:
    """Return `n` chats as `{"messages": [...]}` rows; the same `n` and `seed` give the same rows."""
    rng = random.Random(seed)
    funcs, weights = zip(*FAMILIES, strict=True)
    rows = []
    for _ in range(n):
        messages = rng.choices(funcs, weights=weights)[0](rng)
        if rng.random() < 0.12:
            messages = [{"role": "system", "content": rng.choice(SYSTEM_PROMPTS)}, *messages]
        rows.append({"messages": messages})
    return rows


CAPITAL_QUESTIONS = ("What is the capital of {country}?", "Which city is the capital of {country}?",
                     "Name the capital of {country}.", "What city is the capital of {country}?")
SUM_QUESTIONS = ("What is {a} {op} {b}?", "How much is {a} {op} {b}?", "Compute {a} {op} {b}.",
                 "What do you get from {a} {op} {b}?")


def _facts(seed: int) -> list[tuple[str, str, str]]:
    """(question, answer, kind) for every bundled verifiable question, shuffled: the capital of each country
    (checked by name) and differences and sums of small numbers (checked by value), each asked PHRASINGS ways,
    the first ways as the chats ask them."""
    rng = random.Random(seed)
    rows = [(q.format(country=country), city, "capital") for country, city in sorted(COUNTRIES.items())
            for q in CAPITAL_QUESTIONS[:PHRASINGS]]
    pairs = rng.sample([(a, op, b) for a in range(2, 12) for b in range(2, 12) for op in ("plus", "minus")],
                       SUM_FACTS)
    rows += [(q.format(a=a, op=op, b=b), str(a + b if op == "plus" else a - b), "number") for a, op, b in pairs
             for q in SUM_QUESTIONS[:PHRASINGS]]
    rng.shuffle(rows)
    return rows


def generate_prompts(seed: int = BUILTIN_SEED) -> list[dict]:
    """GRPO's bundled prompts: each question with the answer its rewards check."""
    return [{"prompt": question, "answer": answer} for question, answer, _ in _facts(seed)]


def generate_answers(seed: int = BUILTIN_SEED) -> list[dict]:
    """The same questions for SFT, each answered twice: once right and once wrong (another capital; the number
    off by 1, 2 or 10), shuffled. A model trained on it answers each question right about half the time: the
    mistakes of unreliable data, which a reward that checks the answer can then train away."""
    rng = random.Random(seed + 1)
    cities = sorted(COUNTRIES.values())
    rows = []
    for question, answer, kind in _facts(seed):
        wrong = rng.choice([c for c in cities if c != answer]) if kind == "capital" else \
            str(int(answer) + rng.choice([-2, -1, 1, 2, 10]))
        rows += [{"question": question, "answer": answer}, {"question": question, "answer": wrong}]
    rng.shuffle(rows)
    return rows


def write_jsonl(rows: list[dict], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        for row in rows:
            f.write(json.dumps(row, ensure_ascii=False) + "\n")


if __name__ == "__main__":  # regenerate the shipped file: python -m smolforge.builtin_data
    write_jsonl(generate(), BUILTIN_PATH)
    write_jsonl(generate_prompts(), PROMPTS_PATH)
    write_jsonl(generate_answers(), ANSWERS_PATH)
    print(f"wrote {BUILTIN_ROWS} rows to {BUILTIN_PATH}, {PROMPTS_ROWS} to {PROMPTS_PATH} and {ANSWERS_ROWS} to "
          f"{ANSWERS_PATH}")
