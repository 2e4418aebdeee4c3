"""Write ``acme_rag_task.jsonl``: labelled questions about the Acme Lumen docs, with retrieved contexts.

Each item's ``context`` is what the RAG examples retrieve for its question (the LangChain
example's MiniLM retriever, top-2 passages joined by a blank line; the LlamaIndex example
is built to retrieve and lay out the same text). ``spill-guard calibrate`` then frames the
item exactly as the examples prompt the model (the core's ``Context:`` layout), so the
fitted threshold is fitted on the score distribution the guard sees at run time.

Two kinds of questions:

- ``meta.kind == "answerable"``: the docs state the answer; ``answers`` lists the gold answer
  and its usual variants (the judge normalises case, accents, punctuation and number formats).
- ``meta.kind == "unanswerable"``: about Acme Lumen, but the docs do not say. ``answers``
  lists ways of saying so (``ABSTENTIONS``); a confident made-up answer matches none of
  them and is judged wrong, which is the hallucination the guard should catch.

The judge rejects an answer holding a second, different number (rule 2b in
``spill_guard.tasks.judge``: "6 - 3 is 1" is wrong), so a correct answer that repeats a
number of the question ("The Glint 2 weighs 9 kilograms", "312 people in 2024") would be
judged wrong. Numeric answers to such questions therefore also accept the answer phrase with
the question's number in it ("Glint 2 weighs 9"). These variants were added after reading
dev-split answers only; the test split was never looked at before the evaluation.

    python examples/data/build_acme_rag_task.py     # rewrites examples/data/acme_rag_task.jsonl
"""

from __future__ import annotations

import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))  # the examples folder, for the LangChain example's retriever

from spill_guard.tasks import TaskItem  # noqa: E402
from spill_guard.tasks.normalize import tokens  # noqa: E402
from spill_guard.tasks.schema import save_jsonl  # noqa: E402

OUTPUT = HERE / "acme_rag_task.jsonl"

#: Phrasings of "the documents do not say". The judge looks for one of them as a whole-token
#: run in the answer, so "The context does not mention the revenue." matches "not mention".
ABSTENTIONS = [
    "I don't know", "do not know", "not mentioned", "not mention", "no mention", "no information",
    "not provided", "not specified", "not stated", "not given", "does not say", "doesn't say",
    "not available", "unknown", "cannot answer", "can't answer", "not known", "not include",
    "does not provide", "doesn't provide", "not enough information", "cannot be determined", "not clear",
]

# (doc, question, accepted answers)
ANSWERABLE: list[tuple[str, str, list[str]]] = [
    ("company", "In which year was Acme Lumen Robotics founded?", ["2011"]),
    ("company", "In which city was Acme Lumen Robotics founded?", ["Tampere"]),
    ("company", "In which country was Acme Lumen Robotics founded?", ["Finland"]),
    ("company", "Who founded Acme Lumen Robotics?", ["Maija Korhonen", "Tomas Lindqvist"]),
    ("company", "How many people founded Acme Lumen Robotics?", ["two", "2"]),
    ("company", "What do Acme Lumen's robots clean?", ["glass roofs", "roofs of greenhouses", "greenhouse roofs", "glass"]),
    ("company", "What is the street address of Acme Lumen's headquarters?", ["Hatanpään valtatie 40"]),
    ("company", "How many people did Acme Lumen Robotics employ in 2024?", ["312", "312 people in 2024"]),
    ("company", "In which city is Acme Lumen headquartered?", ["Tampere"]),
    ("company", "What kind of products does Acme Lumen Robotics build?", ["robots", "robot"]),
    ("products", "How many robots does Acme Lumen sell?", ["three", "3"]),
    ("products", "Which robot is Acme Lumen's entry model?", ["Glint 2"]),
    ("products", "How much does the Glint 2 weigh?", ["9 kilograms", "9 kg", "nine kilograms", "Glint 2 weighs 9"]),
    ("products", "How much does the Glint Pro weigh?", ["14 kilograms", "14 kg", "fourteen kilograms"]),
    ("products", "How many square metres of glass does the Glint 2 clean per hour?", ["400", "Glint 2 cleans 400", "Glint 2 cleans up to 400"]),
    ("products", "How many square metres of glass does the Glint Pro clean per hour?", ["900"]),
    ("products", "What is the Halo?", ["docking station", "charging station", "dock"]),
    ("products", "How many robots can the Halo charge at once?", ["four", "4"]),
    ("products", "How much does the Glint Pro cost?", ["8,700 euros", "8,700", "8700 euros"]),
    ("products", "How much does the Glint 2 cost?", ["4,900 euros", "4,900", "4900 euros", "Glint 2 costs 4,900"]),
    ("products", "Besides charging robots, what does the Halo station refill?", ["water"]),
    ("products", "Which Acme Lumen robot is heavier, the Glint 2 or the Glint Pro?", ["Glint Pro"]),
    ("products", "Which Acme Lumen robot cleans the most glass per hour?", ["Glint Pro"]),
    ("products", "What is the name of Acme Lumen's docking station?", ["Halo"]),
    ("battery", "What voltage is the battery of a Glint robot?", ["48 volts", "48-volt", "48 V", "48"]),
    ("battery", "What type of battery do Glint robots use?", ["lithium iron phosphate", "LiFePO4"]),
    ("battery", "How long does a full charge take on the Halo station?", ["95 minutes"]),
    ("battery", "How many hours of cleaning does a full charge give?", ["6 hours", "six hours", "about 6"]),
    ("battery", "For how many charge cycles is the Glint battery rated?", ["3,000", "3000", "three thousand"]),
    ("battery", "Can the customer replace the Glint battery?", ["yes", "without tools", "customer can replace"]),
    ("warranty", "How long is the warranty on parts and labour?", ["3 years", "3-year", "three years", "three-year"]),
    ("warranty", "How long is the warranty on the battery?", ["2 years", "2-year", "two years", "two-year"]),
    ("warranty", "Does the warranty cover damage from hail?", ["no", "does not cover", "not covered"]),
    ("warranty", "Which ingredient in cleaning agents voids the warranty?", ["ammonia"]),
    ("warranty", "Where are warranty claims filed?", ["customer portal"]),
    ("warranty", "What must a warranty claim include?", ["serial number"]),
    ("warranty", "Which kind of weather damage is not covered by the warranty?", ["hail"]),
    ("support", "On which days is Acme Lumen customer support open?", ["Monday to Friday", "weekdays", "Monday through Friday"]),
    ("support", "What are the opening hours of customer support?", ["8:00 to 17:00", "8 to 17", "8:00 - 17:00", "8am to 5pm"]),
    ("support", "What is the customer support email address?", ["help@acme-lumen.example"]),
    ("support", "What is the customer support phone number?", ["+358 3 555 0142"]),
    ("support", "How quickly do replacement brushes ship inside the European Union?", ["2 working days", "two working days", "2 days", "two days"]),
    ("support", "In which time zone are the support hours given?", ["Finnish time", "Finnish", "Finland"]),
    ("history", "What was the first Acme Lumen prototype called?", ["Puddle"]),
    ("history", "In which year was the first prototype tested?", ["2012"]),
    ("history", "In which town was the first prototype tested?", ["Närpes"]),
    ("history", "What was grown in the greenhouse where the first prototype was tested?", ["tomatoes", "tomato"]),
    ("history", "In which year did the Glint 1 go on sale?", ["2015", "Glint 1 went on sale in 2015"]),
    ("history", "In which year did Acme Lumen open its second factory?", ["2019"]),
    ("history", "In which city is Acme Lumen's second factory?", ["Gdańsk", "Gdansk"]),
    ("history", "In which country is the Gdańsk factory?", ["Poland"]),
    ("history", "In which year did the Glint 2 replace the Glint 1?", ["2021", "Glint 2 replaced the Glint 1 in 2021"]),
    ("history", "In which year did the Glint Pro launch?", ["2023"]),
    ("leadership", "Who is the chief executive officer of Acme Lumen?", ["Maija Korhonen", "Korhonen"]),
    ("leadership", "What is the first name of Acme Lumen's CEO?", ["Maija"]),
    ("leadership", "Who is the chief technology officer of Acme Lumen?", ["Aarav Mehta", "Mehta"]),
    ("leadership", "In which year did Aarav Mehta join Acme Lumen?", ["2016"]),
    ("leadership", "Who chairs Acme Lumen's board of directors?", ["Tomas Lindqvist", "Lindqvist"]),
    ("leadership", "In which year did Tomas Lindqvist leave his operational role?", ["2020"]),
    ("leadership", "What role does Tomas Lindqvist hold now?", ["chairs the board", "chair", "chairman", "chairperson"]),
    ("leadership", "What is Aarav Mehta's job at Acme Lumen?", ["chief technology officer", "CTO"]),
    ("leadership", "What is Maija Korhonen's job at Acme Lumen?", ["chief executive officer", "CEO"]),
    ("software", "What operating system do Acme Lumen robots run?", ["LumenOS", "Lumen OS"]),
    ("software", "How often are software updates delivered to the robots?", ["every quarter", "quarterly", "four times a year"]),
    ("software", "How are software updates delivered to the robots?", ["Wi-Fi", "wifi", "wireless"]),
    ("software", "Which web application do greenhouse managers use to plan cleaning routes?", ["LumenMap", "Lumen Map"]),
    ("software", "What does LumenMap show for each roof panel?", ["heat map", "dirt", "heatmap"]),
    ("software", "Which LumenOS version added rain detection?", ["LumenOS 5", "version 5", "5", "LumenOS 5 added rain detection in 2024"]),
    ("software", "Which feature did LumenOS 5 add?", ["rain detection"]),
    ("software", "In which year was rain detection added to LumenOS?", ["2024", "LumenOS 5 in 2024"]),
    ("sustainability", "What water do the robots use when the greenhouse has a collection tank?", ["rainwater", "rain water"]),
    ("sustainability", "How much more light do clean roofs let in?", ["12 percent", "12%", "up to 12"]),
    ("sustainability", "What does the extra light from clean roofs raise?", ["crop yields", "yields", "yield"]),
    ("sustainability", "What does a greenhouse need for the robots to use recycled rainwater?", ["collection tank", "tank"]),
    ("customers", "In how many countries does Acme Lumen have customers?", ["14", "fourteen"]),
    ("customers", "What is Acme Lumen's largest market?", ["Netherlands"]),
    ("customers", "Which country is Acme Lumen's second-largest market?", ["Spain"]),
    ("customers", "Which country is Acme Lumen's third-largest market?", ["Finland"]),
    ("customers", "How many robots are in Acme Lumen's largest single installation?", ["60", "sixty"]),
    ("customers", "Near which town is Acme Lumen's largest single installation?", ["Aalsmeer"]),
    ("customers", "What kind of business runs Acme Lumen's largest installation?", ["flower grower", "flower", "flowers"]),
    ("customers", "How much does it cost to lease an Acme Lumen robot per month?", ["190 euros", "190"]),
    ("customers", "Which robot model is used in the largest single installation?", ["Glint Pro"]),
    ("customers", "What can customers do instead of buying a robot?", ["lease", "leasing", "rent"]),
]

#: About Acme Lumen, but the docs do not say.
UNANSWERABLE: list[str] = [
    "What was Acme Lumen's revenue in 2024?",
    "Which bank financed the Gdańsk factory?",
    "What is the name of Acme Lumen's mascot?",
    "Who is the chief financial officer of Acme Lumen?",
    "How many robots did Acme Lumen sell in 2023?",
    "What is the stock ticker symbol of Acme Lumen?",
    "How much does the Halo station cost?",
    "What colour is the Glint Pro?",
    "How tall is the Glint 2?",
    "Which programming language is LumenOS written in?",
    "How many employees work at the Gdańsk factory?",
    "What was the price of the Glint 1?",
    "Who designed the brushes of the Glint Pro?",
    "What is Acme Lumen's profit margin?",
    "When will the Glint 3 be released?",
    "What is the steepest roof slope a Glint robot can climb?",
    "How loud is the Glint Pro in decibels?",
    "What is the name of the tomato grower in Närpes?",
    "Who is Acme Lumen's largest investor?",
    "What is the battery capacity of a Glint robot in watt-hours?",
    "How many customers does Acme Lumen have in Spain?",
    "How much does an extended warranty cost?",
    "Which university did Aarav Mehta attend?",
    "How old is Maija Korhonen?",
    "How many patents does Acme Lumen hold?",
    "What is the support phone number in the United States?",
    "Who was Acme Lumen's first customer?",
    "How much did the Aalsmeer installation cost?",
    "Which cloud provider hosts LumenMap?",
    "What is the maximum operating temperature of the Glint 2?",
    "What is Acme Lumen's annual carbon footprint?",
    "Who was the chief technology officer before Aarav Mehta?",
    "How many robots did the Puddle prototype project build?",
]


def gold_in_context(answers: list[str], context: str) -> bool:
    """Whether some accepted answer occurs verbatim (after normalisation) in the retrieved text.

    False means the retriever missed the passage (or the answer needs an inference, such as
    counting the founders); the item stays in the task because the guard meets such misses too.
    """
    text = f" {' '.join(tokens(context))} "
    return any(f" {' '.join(tokens(a))} " in text for a in answers)


def build_items(retrieve) -> list[TaskItem]:
    """Task items; ``retrieve(question) -> context`` gives each question its retrieved passages."""
    items = []
    for n, (doc, question, answers) in enumerate(ANSWERABLE, start=1):
        context = retrieve(question)
        items.append(TaskItem(id=f"acme-a{n:03d}", question=question, answers=answers, context=context,
                              meta={"kind": "answerable", "doc": doc, "gold_in_context": gold_in_context(answers, context)}))
    for n, question in enumerate(UNANSWERABLE, start=1):
        items.append(TaskItem(id=f"acme-u{n:03d}", question=question, answers=ABSTENTIONS, context=retrieve(question),
                              meta={"kind": "unanswerable"}))
    return items


def main() -> int:
    from langchain_rag import build_retriever, join_passages

    retriever = build_retriever()
    items = build_items(lambda q: join_passages(retriever.invoke(q)))
    save_jsonl(items, OUTPUT)
    print(f"wrote {OUTPUT}: {len(ANSWERABLE)} answerable, {len(UNANSWERABLE)} unanswerable questions")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
