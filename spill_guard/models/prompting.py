"""Turn a question (and optional RAG context) into the exact prompt token ids fed to the model.

Chat models get their own chat template with a generation prompt; tokenizers without one
(base models) get a plain ``Question: ... / Answer:`` frame. The ids returned here are the
ids the model sees, which is what reports record as ``prompt_ids``.
"""

from __future__ import annotations

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
            f"{text[max(0, exc.start - 20):exc.start + 20]!r} is a lone surrogate (typically bytes that are not "
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
    """Token ids of the full prompt for ``question``.

    ``use_chat_template=None`` uses the tokenizer's chat template when it has one.
    """
    user = format_question(question, context=context, instruction=instruction)
    check_text(system, "system message")
    if _uses_template(tokenizer, use_chat_template):
        messages = ([{"role": "system", "content": system}] if system else []) + [{"role": "user", "content": user}]
        return _template_ids(tokenizer, messages)
    text = (f"{system}\n\n" if system else "") + f"Question: {user}\nAnswer:"
    return list(tokenizer(text)["input_ids"])


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
