"""Tools, prompts and checks the tool-calling tests and bench/tool_calls.py share."""

from __future__ import annotations

import json
from typing import Any

import jsonschema

WEATHER: dict[str, Any] = {"type": "function", "function": {
    "name": "get_weather", "description": "Get the current weather in a city.",
    "parameters": {"type": "object", "properties": {
        "city": {"type": "string", "description": "City name, e.g. Paris"},
        "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]}},
        "required": ["city"]}}}
TIME: dict[str, Any] = {"type": "function", "function": {
    "name": "get_time", "description": "The current time in a time zone.",
    "parameters": {"type": "object", "properties": {"timezone": {"type": "string"}},
                   "required": ["timezone"]}}}
SEARCH: dict[str, Any] = {"type": "function", "function": {
    "name": "search_products", "description": "Search the shop's catalogue.",
    "parameters": {"type": "object", "properties": {
        "query": {"type": "string", "maxLength": 60},
        "max_results": {"type": "integer", "minimum": 1, "maximum": 20},
        "categories": {"type": "array", "maxItems": 3,
                       "items": {"enum": ["books", "music", "garden", "toys"]}},
        "in_stock": {"type": "boolean"}},
        "required": ["query", "max_results"]}}}
EMAIL: dict[str, Any] = {"type": "function", "function": {
    "name": "send_email", "description": "Send an email.", "strict": True,
    "parameters": {"type": "object", "properties": {
        "to": {"type": "string", "pattern": "^[a-z0-9.]+@[a-z0-9.]+$", "maxLength": 40},
        "subject": {"type": "string", "maxLength": 80},
        "body": {"type": "string", "maxLength": 400},
        "priority": {"enum": ["low", "normal", "high"]}},
        "required": ["to", "subject", "body", "priority"], "additionalProperties": False}}}
CALENDAR: dict[str, Any] = {"type": "function", "function": {
    "name": "create_event", "description": "Put an event in the calendar.",
    "parameters": {"type": "object", "properties": {
        "title": {"type": "string", "maxLength": 60},
        "start": {"type": "object", "properties": {
            "date": {"type": "string", "pattern": "^2[0-9]{3}-[01][0-9]-[0-3][0-9]$"},
            "hour": {"type": "integer", "minimum": 0, "maximum": 23}},
            "required": ["date", "hour"]},
        "attendees": {"type": "array", "items": {"type": "string", "maxLength": 40},
                      "maxItems": 4}},
        "required": ["title", "start"]}}}
NO_ARGS: dict[str, Any] = {"type": "function", "function": {
    "name": "list_alarms", "description": "List the alarms that are set."}}

TOOL_SETS: dict[str, list[dict[str, Any]]] = {
    "weather": [WEATHER],
    "weather+time": [WEATHER, TIME],
    "shop": [SEARCH, NO_ARGS],
    "email": [EMAIL],
    "assistant": [WEATHER, TIME, SEARCH, EMAIL, CALENDAR, NO_ARGS],
}

PROMPTS = [
    "What is the weather in Paris?", "Is it raining in Tokyo right now?",
    "Tell me the temperature in Oslo in fahrenheit.", "What time is it in New York?",
    "Find me three books about gardening.", "Search for toy trains that are in stock.",
    "Email bob@example.com that the meeting moved to Friday.",
    "Put a dentist appointment in my calendar for 2025-03-04 at 9.",
    "Which alarms do I have?", "Hello!", "Write a haiku about autumn.",
    "What is 17 times 23?", "Who wrote Hamlet?", "Translate 'good morning' into Spanish.",
    "I need a new garden hose, can you look one up?", "What's the weather like in Cairo today?",
    "Send an urgent email to ops@corp.io saying the server is down.",
    "Schedule lunch with Ana and Li on 2025-06-01 at noon.", "What time is it in UTC?",
    "Do you sell music CDs?", "Give me a weather report for Buenos Aires.",
    "Summarise the plot of Cinderella in one sentence.", "Is it cold in Moscow?",
    "Book a team meeting titled Sprint review for 2025-02-10 at 15.",
    "Tell me a joke.", "List my alarms please.", "How warm is it in Sydney?",
    "Find at most five toys for a toddler.", "Write to anna@mail.com about the invoice.",
    "What is the capital of Canada?", "What time is it in Tokyo?",
    "Check the weather in Lagos in celsius.", "Search books by Tolkien.",
    "Create an event called Yoga on 2025-09-09 at 7.", "Explain photosynthesis briefly.",
    "Email the team at team@startup.dev a reminder about Friday's demo.",
    "Any garden tools in stock?", "Weather forecast for Reykjavik?",
    "What's the local time in Berlin?", "Recommend a good novel.",
    "How's the weather in Mumbai?", "Look up music by the Beatles.",
    "Remind me what alarms are set.", "What is the time zone of India?",
    "Please send an email to a.b@c.de with subject Hi.", "Plan a birthday party event on "
    "2025-12-24 at 18 with Tom.", "Is it sunny in Madrid?", "What is 2 plus 2?",
    "Find two cheap books about cooking.", "Good night!",
]


def schema_of(tools: list[dict[str, Any]], name: str) -> dict[str, Any]:
    fn = next(t["function"] for t in tools if t["function"]["name"] == name)
    return dict(fn.get("parameters") or {"type": "object"})


def check_call(tools: list[dict[str, Any]], name: str, arguments: str) -> dict[str, Any]:
    """The call's arguments parsed; raises unless the name is declared and they match its
    schema."""
    args = json.loads(arguments)
    jsonschema.validate(args, schema_of(tools, name))
    return dict(args)
