"""Turn a question (and optional RAG context) into the exact prompt token ids fed to the model.

Chat models get their own chat template with a generation prompt; tokenizers without one
(base models) get a plain ``Question: ... / Answer:`` frame. The ids returned here are the
ids the model sees, which is what reports record as ``prompt_ids``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

from spill_guard.errors import InvalidInputError

DEFAULT_INSTRUCTION = "Answer briefly."


def check_text(text: str | None, what: str) -> None:
    """Refuse text the tokenizer cannot encode: lone surrogates, e.g. undecodable bytes that
    Python smuggled in from argv or stdin (``surrogateescape``); tokenizers raise a bare
    TypeError on them."""
    if text is None:
        return
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise InvalidInputError(
            f"the {what} is not valid Unicode text: character {text[exc.start]!r} at position {exc.start} of "
            f"{text[max(0, exc.start - 20) : exc.start + 20]!r} is a lone surrogate (typically bytes that are not "
            "UTF-8, e.g. from a terminal or file in another encoding); pass UTF-8 text."
        ) from None


def format_question(question: str, *, context: str | None = None, instruction: str | None = DEFAULT_INSTRUCTION) -> str:
    """The user turn: optional context passage, the question, then the instruction."""
    if not isinstance(question, str) or not question.strip():
        raise InvalidInputError(f"the question is empty ({question!r}); pass the text you want answered.")
    if context is not None and not isinstance(context, str):
        raise InvalidInputError(f"the context must be text or None, got {context!r}.")
    check_text(question, "question")
    check_text(context, "context")
    check_text(instruction, "instruction")
    parts = []
    if context:
        parts.append(f"Context:\n{context.strip()}\n")
    parts.append(question.strip())
    if instruction:
        parts.append(instruction)
    return "\n".join(parts) if context else " ".join(parts)


def prompt_ids(
    tokenizer: Any,
    question: str,
    *,
    context: str | None = None,
    system: str | None = None,
    instruction: str | None = DEFAULT_INSTRUCTION,
    use_chat_template: bool | None = None,
) -> list[int]:
    """Token ids of the full prompt for ``question`` (:meth:`Prompt.for_question`'s ids).

    ``use_chat_template=None`` uses the tokenizer's chat template when it has one.
    """
    return Prompt.for_question(
        tokenizer,
        question,
        context=context,
        system=system,
        instruction=instruction,
        use_chat_template=use_chat_template,
    ).ids


#: Roles a chat conversation may use; others are refused rather than passed to a template unseen.
CHAT_ROLES = ("system", "user", "assistant")


def chat_prompt_ids(
    tokenizer: Any,
    messages: list[dict[str, str]],
    *,
    use_chat_template: bool | None = None,
) -> list[int]:
    """Token ids of a whole conversation, ready for the assistant's next turn.

    ``messages`` are ``{"role": "system" | "user" | "assistant", "content": str}`` dicts, the
    shape framework integrations (LangChain, LlamaIndex) convert their message objects to.
    Chat models get their template with a generation prompt; tokenizers without one get a
    plain ``System:/User:/Assistant:`` transcript ending in ``Assistant:``.
    """
    _check_messages(messages)
    if _uses_template(tokenizer, use_chat_template):
        return _template_ids(tokenizer, [{"role": m["role"], "content": m["content"]} for m in messages])
    lines = [f"{m['role'].capitalize()}: {m['content'].strip()}" for m in messages]
    return list(tokenizer("\n".join(lines) + "\nAssistant:")["input_ids"])


def _uses_template(tokenizer: Any, use_chat_template: bool | None) -> bool:
    """``None``: use the tokenizer's chat template when it has one; ``True`` requires one."""
    has_template = bool(getattr(tokenizer, "chat_template", None))
    if use_chat_template and not has_template:
        raise InvalidInputError("use_chat_template=True but this tokenizer has no chat template; pass False.")
    return has_template if use_chat_template is None else bool(use_chat_template)


def _template_ids(tokenizer: Any, messages: list[dict[str, str]]) -> list[int]:
    # The template already writes the special tokens; adding them again would double BOS.
    text = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    return list(tokenizer(text, add_special_tokens=False)["input_ids"])


@dataclass(frozen=True)
class Prompt:
    """A prompt kept in the form it was asked, so a retry can ask it again with an instruction.

    Three kinds, one per way a door receives its input:

    * ``"question"`` (:meth:`for_question`, the library guard): one user turn built by
      :func:`format_question` (context, question, the model's instruction), in the chat template
      or, without one, a ``Question: ... / Answer:`` frame;
    * ``"chat"`` (:meth:`for_chat`, chat routes and chat models): the messages as given;
    * ``"text"`` (:meth:`for_text`, completion routes and LLM ``complete``): the raw text, no template.

    :meth:`with_instruction` is the one meaning of a re-prompt for all three: the instruction is
    added at the end of the last user turn (the text, for ``"text"``), after one space, trailing
    whitespace of the turn removed. ``question`` stays the user's question: the guard judges
    and logs the answer against it, not against the re-prompted turn.
    """

    kind: str
    turns: tuple[tuple[str, str], ...]
    question: str
    tokenizer: Any = field(compare=False, repr=False, default=None)
    use_chat_template: bool | None = None

    @classmethod
    def for_question(
        cls,
        tokenizer: Any,
        question: str,
        *,
        context: str | None = None,
        system: str | None = None,
        instruction: str | None = DEFAULT_INSTRUCTION,
        use_chat_template: bool | None = None,
    ) -> Prompt:
        user = format_question(question, context=context, instruction=instruction)
        check_text(system, "system message")
        turns = ((("system", system),) if system else ()) + (("user", user),)
        return cls("question", turns, question, tokenizer, use_chat_template)

    @classmethod
    def for_chat(
        cls, tokenizer: Any, messages: Sequence[dict[str, str]], *, use_chat_template: bool | None = None
    ) -> Prompt:
        _check_messages(messages)
        question = next((m["content"] for m in reversed(messages) if m["role"] == "user"), "")
        return cls("chat", tuple((m["role"], m["content"]) for m in messages), question, tokenizer, use_chat_template)

    @classmethod
    def for_text(cls, tokenizer: Any, text: str) -> Prompt:
        if not isinstance(text, str) or not text.strip():
            raise InvalidInputError(f"the prompt is empty ({text!r}); send the text to complete.")
        check_text(text, "prompt")
        return cls("text", (("user", text),), text, tokenizer, False)

    @cached_property
    def ids(self) -> list[int]:
        """The exact token ids the model is fed."""
        tok = self.tokenizer
        if self.kind == "text":
            return list(tok(self.turns[-1][1])["input_ids"])
        messages = [{"role": role, "content": content} for role, content in self.turns]
        if self.kind == "chat":
            return chat_prompt_ids(tok, messages, use_chat_template=self.use_chat_template)
        if _uses_template(tok, self.use_chat_template):
            return _template_ids(tok, messages)
        system = "".join(f"{c}\n\n" for r, c in self.turns if r == "system")
        return list(tok(f"{system}Question: {self.turns[-1][1]}\nAnswer:")["input_ids"])

    @property
    def messages(self) -> list[dict[str, str]]:
        """The turns as ``{"role", "content"}`` dicts (for ``"text"``: one user turn holding the text)."""
        return [{"role": role, "content": content} for role, content in self.turns]

    def with_instruction(self, instruction: str) -> Prompt:
        """This prompt with ``instruction`` added at the end of its last user turn, after one space."""
        if not isinstance(instruction, str) or not instruction.strip():
            raise InvalidInputError(f"a re-prompt instruction must be non-empty text, got {instruction!r}.")
        check_text(instruction, "instruction")
        turns = list(self.turns)
        last = max(i for i, (role, _) in enumerate(turns) if role == "user")
        turns[last] = ("user", f"{turns[last][1].rstrip()} {instruction.strip()}")
        return dataclasses.replace(self, turns=tuple(turns))


def _check_messages(messages: Sequence[dict[str, str]]) -> None:
    if not messages:
        raise InvalidInputError("no chat messages given; pass at least one user message.")
    for m in messages:
        if m.get("role") not in CHAT_ROLES:
            raise InvalidInputError(f"chat message role {m.get('role')!r} is not one of {CHAT_ROLES}; map it first.")
        if not isinstance(m.get("content"), str):
            raise InvalidInputError(f"chat message content must be text, got {m.get('content')!r}.")
        check_text(m["content"], f"{m['role']} message")
    if not any(m["role"] == "user" and m["content"].strip() for m in messages):
        raise InvalidInputError("the chat messages have no non-empty user message; add the user's question.")
