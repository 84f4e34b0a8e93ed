"""The OpenAPI 3.1 document of the admin API, served at ``/admin/openapi.json``.

It says what the API does: each operation lists the statuses it can answer (413 and
500 on every one: a body declared over the limit is refused on any route, and a bug
is still a bug), and every request object says ``additionalProperties: false``, as
the API refuses keys it does not know. The tests run schemathesis against it.
"""

from __future__ import annotations

import copy
from typing import Any

from tether import Manifest, __version__

__all__ = ["openapi_document"]

_ERROR = {"$ref": "#/components/schemas/Error"}


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


_MEANING = {
    400: "Bad input: a body that is not UTF-8, not JSON, not an object, nested over 32 "
    "deep, with an integer over 64 bits, a value of the wrong type or a key the route "
    "does not take; a bad query; or the manifest or the plugin's config",
    401: "No bearer token",
    403: "Wrong token, or the admin API is locked (no token configured)",
    404: "No plugin of that name",
    408: "The body did not all arrive in time (30 seconds)",
    409: "Conflict: running plugins depend on it, a lifecycle step failed, or the name is taken",
    413: "The body is over the limit (1 MiB)",
    415: "The body's Content-Type is not JSON",
    501: "Not possible (a plugin from an entry point, isolation: process)",
    503: "Unavailable (the state store or the plugin)",
}
_BODY = (400, 408, 415)  # what reading a JSON body can answer


def _errors(*statuses: int) -> dict[str, Any]:
    out = {str(s): _json(_ERROR, _MEANING[s]) for s in sorted({*statuses, 413})}
    out["500"] = _json(_ERROR, "Unexpected failure (see the server log)")
    return out


# The manifest's rule for a plugin name: what no loaded plugin can be called is a 404.
_NAME_PATTERN = "^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$"
_NAME = {
    "name": "name",
    "in": "path",
    "required": True,
    "description": "The plugin's name (no plugin's is longer than 64 characters)",
    "schema": {"type": "string", "pattern": _NAME_PATTERN},
}


def _force(action: str) -> dict[str, Any]:
    return {
        "name": "force",
        "in": "query",
        "required": False,
        "description": f"{action} even though running plugins depend on it",
        "schema": {"type": "boolean", "default": False},
    }


_LIMIT = {
    "name": "limit",
    "in": "query",
    "required": False,
    "description": "At most this many rows (1 to 1000)",
    "schema": {"type": "integer", "minimum": 1, "maximum": 1000, "default": 50},
}
_RELOAD_BODY = {
    "required": False,
    "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ReloadRequest"}}},
}


def _reload_responses() -> dict[str, Any]:
    """200 when a version runs (reloaded, or rolled back: the outcome is data), 409 when
    none does (outcome failed, the result beside the error) or the plugin cannot be
    reloaded (not running, no previous version kept, not from a directory)."""
    return {
        "200": _json(
            {"$ref": "#/components/schemas/ReloadResult"},
            "Reloaded, or rolled back to the version that ran before (outcome, step, error)",
        ),
        **_errors(*_BODY, *_AUTH, 404, 409, 501, 503),
        "409": _json(
            {"$ref": "#/components/schemas/ReloadFailed"},
            "No version runs (error ReloadFailed, with the result), or it cannot be reloaded "
            "now (not running, no previous version kept)",
        ),
    }


def _permission_names() -> list[str]:
    kind = Manifest.model_fields["permissions"].annotation
    return list(getattr(kind, "model_fields", {}))


_DETAIL = _json({"$ref": "#/components/schemas/PluginDetail"}, "The plugin")
_AUTH = (401, 403)

_RESULT_FIELDS = ("plugin", "outcome", "from_version", "to_version", "step", "error",
                  "duration", "held", "rejected", "discarded_writes", "at", "kind")  # fmt: skip

_SCHEMAS: dict[str, Any] = {
    "Error": {
        "type": "object",
        "required": ["error", "message", "plugin", "hint"],
        "properties": {
            "error": {"type": "string", "description": "The error's type name"},
            "message": {"type": "string"},
            "plugin": {"type": ["string", "null"]},
            "hint": {"type": ["string", "null"], "description": "What to do about it"},
        },
    },
    "PluginSummary": {
        "type": "object",
        "required": ["name", "version", "status", "state", "enabled", "ready"],
        "properties": {
            "name": {"type": "string"},
            "version": {"type": "string"},
            "status": {
                "type": "string",
                "enum": ["unloaded", "loading", "initialized", "running", "stopped", "error"],
            },
            "state": {"type": "string", "description": "status, or disabled / degraded"},
            "enabled": {"type": "boolean"},
            "ready": {"type": "boolean"},
            "degraded": {"type": "boolean"},
            "error_count": {"type": "integer"},
            "path": {"type": ["string", "null"]},
        },
    },
    "PluginDetail": {
        "allOf": [
            {"$ref": "#/components/schemas/PluginSummary"},
            {
                "type": "object",
                "properties": {
                    "description": {"type": "string"},
                    "author": {"type": "string"},
                    "isolation": {"type": "string"},
                    "load_time": {"type": ["string", "null"], "format": "date-time"},
                    "dependencies": {
                        "type": "array",
                        "items": {
                            "type": "object",
                            "properties": {
                                "name": {"type": "string"},
                                "version": {"type": "string"},
                                "optional": {"type": "boolean"},
                                "loaded": {"type": "boolean"},
                            },
                        },
                    },
                    "dependents": {"type": "array", "items": {"type": "string"}},
                    "health": {"$ref": "#/components/schemas/PluginHealth"},
                },
            },
        ]
    },
    "HookMetrics": {
        "type": "object",
        "properties": {
            "execution_count": {"type": "integer"},
            "total_duration_seconds": {"type": "number"},
            "average_duration_seconds": {"type": "number"},
            "error_count": {"type": "integer"},
        },
    },
    "PluginHealth": {
        "type": "object",
        "required": ["name", "status", "enabled", "error_count", "hook_metrics"],
        "properties": {
            "name": {"type": "string"},
            "version": {"type": "string"},
            "status": {"type": "string"},
            "state": {"type": "string"},
            "enabled": {"type": "boolean"},
            "ready": {"type": "boolean"},
            "degraded": {"type": "boolean"},
            "error_count": {"type": "integer"},
            "last_error": {"type": ["string", "null"]},
            "last_error_at": {"type": ["string", "null"], "format": "date-time"},
            "errors_by_type": {"type": "object", "additionalProperties": {"type": "integer"}},
            "hook_metrics": {
                "type": "object",
                "additionalProperties": {"$ref": "#/components/schemas/HookMetrics"},
            },
            "load_time": {"type": ["string", "null"], "format": "date-time"},
            "load_duration_seconds": {"type": ["number", "null"]},
            "gate": {"type": "string", "enum": ["open", "held", "closed"]},
            "unavailable_reason": {"type": ["string", "null"]},
            "in_flight": {"type": "integer"},
            "last_health_check": {
                "type": ["object", "null"],
                "properties": {
                    "ok": {"type": "boolean"},
                    "checked_at": {"type": "string", "format": "date-time"},
                    "duration_seconds": {"type": "number"},
                    "error": {"type": ["string", "null"]},
                },
            },
            "error_threshold": {
                "type": ["object", "null"],
                "properties": {
                    "max_errors": {"type": "integer"},
                    "time_window": {"type": "string"},
                    "action": {"type": "string", "enum": ["disable", "log", "alert"]},
                    "reset_on_success": {"type": "boolean"},
                    "warn_at": {"type": "number"},
                    "cooldown": {"type": ["string", "null"]},
                    "errors_in_window": {"type": "integer"},
                    "state": {"type": "string", "enum": ["closed", "open", "half-open"]},
                    "exceeded_count": {"type": "integer"},
                },
            },
            "required": {"type": "boolean"},
            "failed_step": {
                "type": "string",
                "enum": ["load", "initialization", "start", "dependency"],
            },
            "attempts": {"type": "integer"},
        },
    },
    "LoadRequest": {
        "type": "object",
        "required": ["path"],
        "additionalProperties": False,
        "properties": {
            "path": {
                "type": "string",
                "minLength": 1,
                "maxLength": 4096,
                "description": "A plugin directory or manifest file on the server (no NUL, "
                "at most 4096 bytes, 255 per part; not a FIFO, device or socket)",
            },
            "name": {
                "type": ["string", "null"],
                "pattern": _NAME_PATTERN,
                "description": "Must match the manifest's",
            },
            "config": {"type": "object", "description": "The plugin's config"},
            "permissions": {
                "type": ["object", "null"],
                "description": "Grants, at most what the manifest asks for",
                "properties": {name: {"type": "boolean"} for name in _permission_names()},
                "additionalProperties": False,
            },
            "priority": {"type": "integer", "format": "int64", "default": 0},
            "error_threshold": {
                "oneOf": [{"$ref": "#/components/schemas/ErrorThresholdSettings"}, {"type": "null"}]
            },
            "start": {
                "type": "boolean",
                "default": True,
                "description": "Initialize and start it after loading",
            },
        },
    },
    "ErrorThresholdSettings": {
        "type": "object",
        "additionalProperties": False,
        "description": "As in a config entry; the keys given override the section's",
        "properties": {
            "enabled": {"type": "boolean"},
            "max_errors": {"type": "integer", "format": "int64", "minimum": 1},
            "time_window": {"type": ["string", "number"], "description": "30s, 5m or seconds"},
            "action": {"type": "string", "enum": ["disable", "log", "alert"]},
            "reset_on_success": {"type": "boolean"},
            "warn_at": {"type": "number", "exclusiveMinimum": 0, "maximum": 1},
            "cooldown": {"type": ["string", "number", "null"]},
        },
    },
    "DisableRequest": {
        "type": "object",
        "additionalProperties": False,
        "properties": {
            "reason": {
                "type": ["string", "null"],
                "maxLength": 1000,
                "description": "Why (calls are refused with it); default 'it is disabled'",
            }
        },
    },
    "ReloadRequest": {
        "type": "object",
        "additionalProperties": False,
        "description": "Each key optional; one not given is the config's reload: section's",
        "properties": {
            "queue_timeout": {
                "type": ["string", "number"],
                "description": "How long a held call waits: 5s, 500ms or seconds",
            },
            "max_queue_size": {
                "type": "integer",
                "format": "int64",
                "description": "At most this many callers held",
            },
            "strategy": {
                "type": "string",
                "enum": ["block", "reject"],
                "description": "block: hold new calls; reject: refuse them (503) at once",
            },
            "grace_period": {
                "type": ["string", "number"],
                "description": "How long the new version is watched: 30s, 1m or seconds",
            },
        },
    },
    "ReloadResult": {
        "type": "object",
        "required": list(_RESULT_FIELDS),
        "properties": {
            "plugin": {"type": "string"},
            "outcome": {"type": "string", "enum": ["reloaded", "rolled_back", "failed"]},
            "from_version": {"type": "string", "description": "The version live before"},
            "to_version": {
                "type": ["string", "null"],
                "description": "The version tried (null: its manifest could not be read)",
            },
            "step": {
                "type": ["string", "null"],
                "description": "Where the new version failed (manifest, dependencies, import, "
                "config, initialize, start, grace); null when none did",
            },
            "error": {"type": ["string", "null"], "description": "One line, file and line"},
            "duration": {"type": "number", "description": "Seconds"},
            "held": {"type": "integer", "description": "Calls held at the gate meanwhile"},
            "rejected": {"type": "integer", "description": "Calls refused meanwhile (503)"},
            "discarded_writes": {
                "type": "integer",
                "description": "plugin_storage keys the failed version changed, restored",
            },
            "at": {"type": "string", "format": "date-time", "description": "When it began"},
            "kind": {
                "type": "string",
                "enum": ["reload", "rollback"],
                "description": "A reload, or a rollback asked for (POST .../rollback)",
            },
        },
    },
    "ReloadFailed": {
        "allOf": [
            _ERROR,
            {
                "type": "object",
                "properties": {"result": {"$ref": "#/components/schemas/ReloadResult"}},
            },
        ],
    },
    "ReloadHistory": {
        "type": "object",
        "required": ["plugin", "reloads"],
        "properties": {
            "plugin": {"type": "string"},
            "reloads": {
                "type": "array",
                "items": {"$ref": "#/components/schemas/ReloadResult"},
                "description": "Newest first",
            },
        },
    },
    "Graph": {
        "type": "object",
        "properties": {
            "graph": {
                "type": "object",
                "additionalProperties": {"type": "array", "items": {"type": "string"}},
            },
            "order": {"type": "array", "items": {"type": "string"}},
            "nodes": {"type": "array", "items": {"type": "object"}},
            "edges": {
                "type": "array",
                "items": {
                    "type": "object",
                    "properties": {
                        "from": {"type": "string"},
                        "to": {"type": "string"},
                        "version": {"type": "string"},
                        "optional": {"type": "boolean"},
                    },
                },
            },
        },
    },
}


def _paths() -> dict[str, Any]:
    detail_ops = {"parameters": [_NAME]}
    return {
        "/plugins": {
            "get": {
                "operationId": "listPlugins",
                "summary": "Every loaded plugin",
                "responses": {
                    "200": _json(
                        {
                            "type": "object",
                            "properties": {
                                "plugins": {
                                    "type": "array",
                                    "items": {"$ref": "#/components/schemas/PluginSummary"},
                                }
                            },
                        },
                        "The plugins, in load order",
                    ),
                    **_errors(*_AUTH),
                },
            },
            "post": {
                "operationId": "loadPlugin",
                "summary": "Load a plugin from a path on the server (and start it)",
                "requestBody": {
                    "required": True,
                    "content": {
                        "application/json": {"schema": {"$ref": "#/components/schemas/LoadRequest"}}
                    },
                },
                "responses": {
                    "201": _json({"$ref": "#/components/schemas/PluginDetail"}, "Loaded"),
                    **_errors(*_BODY, *_AUTH, 409, 501, 503),
                },
            },
        },
        "/plugins/{name}": {
            **detail_ops,
            "get": {
                "operationId": "getPlugin",
                "summary": "One plugin: info, health, dependencies and dependents",
                "responses": {"200": _DETAIL, **_errors(*_AUTH, 404)},
            },
            "delete": {
                "operationId": "unloadPlugin",
                "summary": "Stop and unload a plugin",
                "parameters": [_force("Unload")],
                "responses": {
                    "200": _json(
                        {
                            "type": "object",
                            "properties": {
                                "name": {"type": "string"},
                                "unloaded": {"type": "boolean"},
                            },
                        },
                        "Unloaded",
                    ),
                    **_errors(400, *_AUTH, 404, 409, 503),
                },
            },
        },
        "/plugins/{name}/health": {
            **detail_ops,
            "get": {
                "operationId": "getPluginHealth",
                "summary": "One plugin's PluginHealth",
                "responses": {
                    "200": _json({"$ref": "#/components/schemas/PluginHealth"}, "Its health"),
                    **_errors(*_AUTH, 404),
                },
            },
        },
        "/plugins/{name}/enable": {
            **detail_ops,
            "post": {
                "operationId": "enablePlugin",
                "summary": "Enable a plugin and start it (saved in the state store)",
                "responses": {"200": _DETAIL, **_errors(*_AUTH, 404, 409, 503)},
            },
        },
        "/plugins/{name}/disable": {
            **detail_ops,
            "post": {
                "operationId": "disablePlugin",
                "summary": "Stop a plugin and refuse calls to it (saved in the state store)",
                "parameters": [_force("Disable")],
                "requestBody": {
                    "required": False,
                    "content": {
                        "application/json": {
                            "schema": {"$ref": "#/components/schemas/DisableRequest"}
                        }
                    },
                },
                "responses": {"200": _DETAIL, **_errors(*_BODY, *_AUTH, 404, 409, 503)},
            },
        },
        "/plugins/{name}/reload": {
            **detail_ops,
            "post": {
                "operationId": "reloadPlugin",
                "summary": "Hot reload: the new version from the plugin's directory, beside the "
                "old one, calls held meanwhile; rolled back if it fails",
                "requestBody": _RELOAD_BODY,
                "responses": _reload_responses(),
            },
        },
        "/plugins/{name}/rollback": {
            **detail_ops,
            "post": {
                "operationId": "rollbackPlugin",
                "summary": "Bring back the previous version kept under the state directory",
                "requestBody": _RELOAD_BODY,
                "responses": _reload_responses(),
            },
        },
        "/plugins/{name}/history": {
            **detail_ops,
            "get": {
                "operationId": "getReloadHistory",
                "summary": "The plugin's reloads and rollbacks from the state store, newest first",
                "parameters": [_LIMIT],
                "responses": {
                    "200": _json({"$ref": "#/components/schemas/ReloadHistory"}, "Its reloads"),
                    **_errors(400, *_AUTH, 404, 503),
                },
            },
        },
        "/health": {
            "get": {
                "operationId": "getAllHealth",
                "summary": "Every plugin's PluginHealth (those that failed and are not "
                "required too: status failed), and the overall status",
                "responses": {
                    "200": _json(
                        {
                            "type": "object",
                            "required": ["status", "plugins"],
                            "properties": {
                                "status": {"type": "string", "enum": ["healthy", "degraded"]},
                                "plugins": {
                                    "type": "object",
                                    "additionalProperties": {
                                        "$ref": "#/components/schemas/PluginHealth"
                                    },
                                },
                            },
                        },
                        "Health by plugin",
                    ),
                    **_errors(*_AUTH),
                },
            },
        },
        "/graph": {
            "get": {
                "operationId": "getDependencyGraph",
                "summary": "The dependency graph of the loaded plugins",
                "responses": {
                    "200": _json({"$ref": "#/components/schemas/Graph"}, "The graph"),
                    **_errors(*_AUTH),
                },
            },
        },
        "/openapi.json": {
            "get": {
                "operationId": "getOpenApi",
                "summary": "This document (no token needed)",
                "security": [],
                "responses": {
                    "200": _json({"type": "object"}, "The OpenAPI document"),
                    **_errors(),
                },
            },
        },
        **_ops_paths(),
    }


def _ops_paths() -> dict[str, Any]:
    root = [{"url": "/", "description": "Operations routes live at the root"}]
    return {
        "/healthz": {
            "servers": root,
            "get": {
                "operationId": "healthz",
                "summary": "The process is alive (no token needed)",
                "security": [],
                "responses": {"200": _json({"type": "object"}, "Alive"), **_errors()},
            },
        },
        "/readyz": {
            "servers": root,
            "get": {
                "operationId": "readyz",
                "summary": "Every plugin is enabled and running (no token needed)",
                "security": [],
                "responses": {
                    "200": _json({"type": "object"}, "Ready"),
                    "503": _json(
                        {
                            "allOf": [
                                _ERROR,
                                {
                                    "type": "object",
                                    "properties": {
                                        "not_ready": {
                                            "type": "object",
                                            "additionalProperties": {"type": "string"},
                                        }
                                    },
                                },
                            ]
                        },
                        "Not ready: the plugins that are not, with why",
                    ),
                    **_errors(),
                },
            },
        },
        "/metrics": {
            "servers": root,
            "get": {
                "operationId": "metrics",
                "summary": "Prometheus metrics (token only with admin.protect_metrics)",
                "security": [],
                "responses": {
                    "200": {
                        "description": "Prometheus text format",
                        "content": {"text/plain": {"schema": {"type": "string"}}},
                    },
                    **_errors(*_AUTH),
                },
            },
        },
    }


_DOCUMENT: dict[str, Any] = {
    "openapi": "3.1.0",
    "info": {
        "title": "tether admin API",
        "version": __version__,
        "description": "Manage the plugins of a running tether server. Every route needs "
        "'Authorization: Bearer <token>' unless marked otherwise. Errors have one shape: "
        '{"error", "message", "plugin", "hint"}. Request bodies are JSON objects of at '
        "most 1 MiB (413 beyond). A method a route does not take answers 405 with Allow, "
        "a path no route has 404. See docs/operations.md.",
    },
    "servers": [{"url": "/admin"}],
    "security": [{"bearerAuth": []}],
    "paths": _paths(),
    "components": {
        "schemas": _SCHEMAS,
        "securitySchemes": {"bearerAuth": {"type": "http", "scheme": "bearer"}},
    },
}


def openapi_document() -> dict[str, Any]:
    """A copy of the document (callers may change it)."""
    return copy.deepcopy(_DOCUMENT)
