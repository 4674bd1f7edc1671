"""Write `example.jsonl`: the embedded default dataset (self-written, deterministic, ~200 rows).

OpenAI `messages` rows: hand-written questions and answers, generated exercises with computed answers
(arithmetic, unit conversion, text tasks), multi-turn follow-ups, system prompts, tool calls with
results, reasoning, Chinese examples (including the seed document's prompt/response), and three
deliberately bad rows (an empty reply, an unknown role, a broken JSON line) that `validate` rejects.

usage: python -m sftdata.data.make_example [OUT.jsonl]   (default: next to this file)
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent

HANDWRITTEN = [
    ("How do I make a cup of green tea?",
     "Heat water to about 80 °C (not boiling), pour it over one teaspoon of leaves or one tea bag, and steep "
     "for two to three minutes. Longer steeping or hotter water makes green tea bitter."),
    ("Give me three tips for writing a clear email.",
     "1. Put the request or the key point in the first sentence.\n2. Keep paragraphs short, one idea each.\n"
     "3. End with the next step you expect, and by when."),
    ("What is the difference between weather and climate?",
     "Weather is the state of the atmosphere over hours or days in one place. Climate is the pattern of weather "
     "averaged over decades. A cold week is weather; warmer winters over thirty years are climate."),
    ("Write a haiku about autumn.", "Red leaves drift and fall\nthe river carries them south\nquiet afternoon"),
    ("Explain what a Python list comprehension is.",
     "A list comprehension builds a list from an iterable in one expression: `[x * x for x in range(5)]` gives "
     "`[0, 1, 4, 9, 16]`. You can add a condition: `[x for x in items if x > 0]` keeps only positive items."),
    ("Why is the sky blue?",
     "Sunlight contains all colours. Air molecules scatter short wavelengths (blue) much more than long ones "
     "(red), so blue light reaches your eyes from every direction of the sky."),
    ("Suggest a name for a small bakery.", "How about \"The Rising Loaf\"? It is short, friendly and hints at bread."),
    ("What does HTTP status code 404 mean?",
     "404 Not Found: the server is reachable but has nothing at the requested address. Check the URL for typos."),
    ("How many minutes are in a day?", "There are 24 hours × 60 minutes = 1,440 minutes in a day."),
    ("Summarise the plot of Romeo and Juliet in two sentences.",
     "Two young lovers from feuding families in Verona marry in secret. A chain of misunderstandings leads to "
     "both of their deaths, which finally reconciles the families."),
    ("What is a prime number?",
     "A prime number is a whole number greater than 1 whose only divisors are 1 and itself, like 2, 3, 5, 7 and 11."),
    ("Translate 'good morning' into Spanish.", "\"Good morning\" in Spanish is \"buenos días\"."),
    ("Write a SQL query that counts the rows in a table called orders.", "```sql\nSELECT COUNT(*) FROM orders;\n```"),
    ("What is the boiling point of water at sea level?", "Water boils at 100 °C (212 °F) at sea level."),
    ("Give me a synonym for 'happy'.", "Cheerful. Others are joyful, content and glad."),
    ("How do I reverse a string in Python?", "Use slicing with a step of -1: `'hello'[::-1]` returns `'olleh'`."),
    ("What are the three primary colours of light?", "Red, green and blue. Mixed together at full strength they "
     "make white light."),
    ("Is a tomato a fruit or a vegetable?",
     "Botanically a tomato is a fruit, because it develops from the flower and contains seeds. In cooking it is "
     "usually treated as a vegetable."),
    ("Write one sentence encouraging someone before an exam.",
     "You have prepared for this, so breathe, read each question carefully, and trust what you know."),
    ("What is the largest planet in our solar system?", "Jupiter. Its mass is more than twice that of all the "
     "other planets combined."),
    ("Explain recursion to a beginner.",
     "Recursion is when a function solves a problem by calling itself on a smaller version of the same problem, "
     "until it reaches a case small enough to answer directly, called the base case."),
    ("What is photosynthesis?",
     "Photosynthesis is how plants make food: using sunlight, they turn carbon dioxide and water into glucose, "
     "releasing oxygen as a by-product."),
    ("Recommend a way to remember a new word.",
     "Use it in a sentence of your own today, then review it after one day, three days and a week."),
    ("What is the plural of 'mouse'?", "The plural is \"mice\" for the animal; for computer mice both \"mice\" and "
     "\"mouses\" are used."),
    ("How long does light from the Sun take to reach Earth?", "About 8 minutes and 20 seconds."),
    ("Write a short thank-you note to a colleague who helped me.",
     "Thank you for stepping in to help with the report this week. Your careful review saved me hours, and I "
     "really appreciate it."),
    ("What is the freezing point of water in Fahrenheit?", "32 °F."),
    ("Name three renewable energy sources.", "Solar, wind and hydroelectric power."),
    ("What does CPU stand for?", "Central Processing Unit."),
    ("Fix the grammar: 'She don't like apples.'", "She doesn't like apples."),
    ("What is an adjective?", "An adjective is a word that describes a noun, such as \"tall\", \"blue\" or \"quiet\"."),
    ("Give an example of a metaphor.", "\"Time is a thief\": it describes time as stealing moments from us."),
    ("How many sides does a hexagon have?", "Six."),
    ("What is the chemical symbol for gold?", "Au, from the Latin word \"aurum\"."),
    ("Write a Python function that returns the square of a number.",
     "```python\ndef square(x):\n    return x * x\n```"),
    ("What is the speed of sound in air?", "About 343 metres per second at 20 °C."),
    ("Suggest a healthy breakfast.", "Oatmeal with berries and a spoon of yoghurt: fibre, protein and fruit."),
    ("What does 'RSVP' mean?", "It comes from the French \"répondez s'il vous plaît\", meaning \"please reply\"."),
    ("Who wrote 'Pride and Prejudice'?", "Jane Austen, published in 1813."),
    ("What is the difference between 'affect' and 'effect'?",
     "\"Affect\" is usually a verb (the rain affected the game); \"effect\" is usually a noun (the rain had an "
     "effect on the game)."),
]

CAPITALS = [
    ("France", "Paris"), ("Japan", "Tokyo"), ("Canada", "Ottawa"), ("Australia", "Canberra"), ("Brazil", "Brasília"),
    ("Egypt", "Cairo"), ("Kenya", "Nairobi"), ("Germany", "Berlin"), ("Italy", "Rome"), ("Spain", "Madrid"),
    ("Portugal", "Lisbon"), ("Norway", "Oslo"), ("Sweden", "Stockholm"), ("Finland", "Helsinki"),
    ("Poland", "Warsaw"), ("Greece", "Athens"), ("Turkey", "Ankara"), ("India", "New Delhi"),
    ("Thailand", "Bangkok"), ("Vietnam", "Hanoi"), ("Argentina", "Buenos Aires"), ("Chile", "Santiago"),
    ("Peru", "Lima"), ("Mexico", "Mexico City"), ("Morocco", "Rabat"), ("Nigeria", "Abuja"),
    ("New Zealand", "Wellington"), ("Ireland", "Dublin"), ("Austria", "Vienna"), ("Malaysia", "Kuala Lumpur"),
]
CAPITAL_QUESTIONS = ["What is the capital of {c}?", "Which city is the capital of {c}?", "Name the capital of {c}.",
                     "capital of {c}?"]
CAPITAL_ANSWERS = ["The capital of {c} is {k}.", "{k} is the capital of {c}.", "{k}."]

ZH = [
    ("马来西亚的首都在哪里?", "马来西亚的首都是吉隆坡。"),
    ("请用一句话介绍长城。", "长城是中国古代修建的防御工程，全长两万多公里。"),
    ("一年有多少个月?", "一年有十二个月。"),
    ("水的化学式是什么?", "水的化学式是 H₂O。"),
    ("把“谢谢”翻译成英文。", "“谢谢”的英文是 “thank you”。"),
    ("推荐一种健康的早餐。", "燕麦粥加一些水果和坚果，既有纤维又有蛋白质。"),
    ("什么是质数?", "质数是只能被 1 和它本身整除的大于 1 的整数，例如 2、3、5、7。"),
    ("写一句鼓励考试的话。", "你已经认真准备过了，放松心情，相信自己！"),
]


def user(text: str) -> dict:
    return {"role": "user", "content": text}


def assistant(text: str, **extra: object) -> dict:
    return {"role": "assistant", "content": text, **extra}


def rows() -> list[dict]:
    out: list[dict] = []
    for q, a in HANDWRITTEN:
        out.append({"messages": [user(q), assistant(a)]})
    for i, (c, k) in enumerate(CAPITALS):
        q = CAPITAL_QUESTIONS[i % len(CAPITAL_QUESTIONS)].format(c=c)
        out.append({"messages": [user(q), assistant(CAPITAL_ANSWERS[i % len(CAPITAL_ANSWERS)].format(c=c, k=k))]})
    for i in range(30):
        a, b = 3 + (i * 7) % 23, 4 + (i * 5) % 17
        if i % 3 == 0:
            q, ans = f"What is {a} + {b}?", f"{a} + {b} = {a + b}."
        elif i % 3 == 1:
            q, ans = f"Calculate {a} times {b}.", f"{a} × {b} = {a * b}."
        else:
            q, ans = f"What is {a * b} divided by {b}?", f"{a * b} ÷ {b} = {a}."
        out.append({"messages": [user(q), assistant(ans)]})
    for i in range(10):
        km = 5 * (i + 1)
        out.append({"messages": [user(f"Convert {km} kilometres to miles."),
                                 assistant(f"{km} km is about {km * 0.621371:.1f} miles (1 km ≈ 0.621 miles).")]})
    for i in range(10):
        c = -10 + 7 * i
        out.append({"messages": [user(f"What is {c} °C in Fahrenheit?"),
                                 assistant(f"{c} °C = {c * 9 / 5 + 32:.1f} °F (multiply by 9/5, then add 32).")]})
    words = ["planet", "garden", "window", "river", "bicycle", "orange", "library", "mountain", "pencil", "thunder"]
    for i, w in enumerate(words):
        if i % 2 == 0:
            out.append({"messages": [user(f"Spell '{w}' backwards."), assistant(f"'{w}' backwards is '{w[::-1]}'.")]})
        else:
            out.append({"messages": [user(f"How many letters are in the word '{w}'?"),
                                     assistant(f"'{w}' has {len(w)} letters.")]})
    for i in range(6):
        items = sorted(words[i:i + 4], key=lambda s: s[::-1])
        out.append({"messages": [user("Sort these words alphabetically: " + ", ".join(items) + "."),
                                 assistant(", ".join(sorted(items)) + ".")]})
    for i in range(12):  # multi-turn follow-ups
        c, k = CAPITALS[(i * 7) % len(CAPITALS)]
        a, b = 2 + i, 9 + 2 * i
        if i % 2 == 0:
            msgs = [user(f"What is the capital of {c}?"), assistant(f"The capital of {c} is {k}."),
                    user("And how many letters does that name have, ignoring spaces?"),
                    assistant(f"\"{k}\" has {len(k.replace(' ', ''))} letters, not counting spaces.")]
        else:
            msgs = [user(f"What is {a} × {b}?"), assistant(f"{a} × {b} = {a * b}."),
                    user("Now add 10 to that."), assistant(f"{a * b} + 10 = {a * b + 10}."),
                    user("And halve it?"), assistant(f"({a * b + 10}) ÷ 2 = {(a * b + 10) / 2:g}.")]
        out.append({"messages": msgs})
    systems = ["You are a concise assistant. Answer in one sentence.", "You are a friendly tutor for children.",
               "You answer as a helpful librarian.", ""]
    for i in range(12):
        q, a = HANDWRITTEN[(i * 3) % len(HANDWRITTEN)]
        out.append({"messages": [{"role": "system", "content": systems[i % len(systems)]}, user(q), assistant(a)]})
    weather_tool = {"type": "function", "function": {
        "name": "get_weather", "description": "Current weather for a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string", "description": "City name"}},
                       "required": ["city"]}}}
    for i in range(10):
        city = CAPITALS[(i * 3) % len(CAPITALS)][1]
        temp = 8 + (i * 5) % 21
        call = {"id": f"call_{i}", "type": "function",
                "function": {"name": "get_weather", "arguments": json.dumps({"city": city}, ensure_ascii=False)}}
        out.append({"tools": [weather_tool], "messages": [
            user(f"What's the weather like in {city} right now?"),
            assistant("", tool_calls=[call]),
            {"role": "tool", "tool_call_id": f"call_{i}", "name": "get_weather",
             "content": json.dumps({"city": city, "temperature_c": temp, "sky": "clear" if i % 2 else "cloudy"},
                                   ensure_ascii=False)},
            assistant(f"It is {temp} °C and {'clear' if i % 2 else 'cloudy'} in {city} right now.")]})
    for i in range(8):
        a, b = 12 + 3 * i, 7 + i
        out.append({"messages": [
            user(f"A shop sells pens at {b} dollars each. How much do {a} pens cost?"),
            assistant(f"{a} pens cost {a * b} dollars.",
                      reasoning=f"Each pen costs {b}. {a} pens cost {a} × {b} = {a * b}.")]})
    for q, a in ZH:
        out.append({"messages": [user(q), assistant(a)]})
    for i, row in enumerate(out):
        row["id"] = f"ex{i:03d}"
        row = {"id": row.pop("id"), **row}
        out[i] = row
    out.append({"id": "bad-empty-reply", "messages": [user("Say something."), assistant("   ")]})
    out.append({"id": "bad-unknown-role", "messages": [{"role": "narrator", "content": "Once upon a time"},
                                                       assistant("...and they lived happily ever after.")]})
    return out


BROKEN_LINE = '{"id": "bad-json", "messages": [{"role": "user", "content": "unterminated'


def text() -> str:
    """The file's exact text (the broken JSON line sits before the last row)."""
    lines = [json.dumps(r, ensure_ascii=False) for r in rows()]
    lines.insert(len(lines) - 1, BROKEN_LINE)
    return "\n".join(lines) + "\n"


def main() -> None:
    out = Path(sys.argv[1]) if len(sys.argv) > 1 else HERE / "example.jsonl"
    out.write_text(text(), encoding="utf-8")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
