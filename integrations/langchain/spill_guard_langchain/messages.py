"""LangChain messages → the ``{"role", "content"}`` dicts the core's chat prompt builder takes."""

from __future__ import annotations

from collections.abc import Sequence

from langchain_core.messages import AIMessage, BaseMessage, ChatMessage, HumanMessage, SystemMessage

from spill_guard.errors import InvalidInputError

_CHAT_ROLES = {"user": "user", "human": "user", "assistant": "assistant", "ai": "assistant", "system": "system"}


def to_role_dicts(messages: Sequence[BaseMessage]) -> list[dict[str, str]]:
    """Map system/human/AI messages to roles; refuse tool messages and non-text content clearly."""
    out: list[dict[str, str]] = []
    for i, message in enumerate(messages):
        if isinstance(message, SystemMessage):
            role = "system"
        elif isinstance(message, HumanMessage):
            role = "user"
        elif isinstance(message, AIMessage):
            if message.tool_calls:
                raise InvalidInputError(f"message {i} holds tool calls; SpillChatModel does not support tool calling.")
            role = "assistant"
        elif isinstance(message, ChatMessage) and message.role.lower() in _CHAT_ROLES:
            role = _CHAT_ROLES[message.role.lower()]
        else:
            raise InvalidInputError(
                f"message {i} is a {type(message).__name__} (type {message.type!r}); SpillChatModel takes system, "
                "human and AI messages only (no tool messages)."
            )
        out.append({"role": role, "content": _text_of(message, i)})
    return out


def last_user_text(roles: Sequence[dict[str, str]]) -> str:
    """The question the answer is judged against: the last user message."""
    for m in reversed(roles):
        if m["role"] == "user" and m["content"].strip():
            return m["content"]
    raise InvalidInputError("the messages have no non-empty human message; add the user's question.")


def _text_of(message: BaseMessage, i: int) -> str:
    if isinstance(message.content, str):
        return message.content
    kinds = {block.get("type") for block in message.content if isinstance(block, dict)}
    if kinds - {"text"} or any(not isinstance(b, (str, dict)) for b in message.content):
        raise InvalidInputError(
            f"message {i} has non-text content ({sorted(k for k in kinds if k)}); SpillChatModel is text-only."
        )
    return message.text
