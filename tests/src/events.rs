//! Reading `agentwatch trace --json` events (serde_json of the daemon's
//! `Event`: `{"time_ns", "task": {pid, tid, ppid, uid, gid, comm,
//! cgroup_id}, "type": "open"|"exec"|"connect"|"fork"|"exit"|..., ...the
//! variant's fields}`) in assertions. Kept on `serde_json::Value` on
//! purpose: the JSON is a public interface, so the tests read it the way a
//! user's script would, by field name.

use serde_json::Value;

/// The event's type (`open`, `exec`, ...), or "".
pub fn kind(e: &Value) -> &str {
    e["type"].as_str().unwrap_or("")
}

/// `task.pid`.
pub fn pid(e: &Value) -> u64 {
    e["task"]["pid"].as_u64().unwrap_or(0)
}

/// `task.ppid`.
pub fn ppid(e: &Value) -> u64 {
    e["task"]["ppid"].as_u64().unwrap_or(0)
}

/// `task.cgroup_id`.
pub fn cgroup_id(e: &Value) -> u64 {
    e["task"]["cgroup_id"].as_u64().unwrap_or(0)
}

/// A string field, or "".
pub fn str_field<'a>(e: &'a Value, name: &str) -> &'a str {
    e[name].as_str().unwrap_or("")
}

/// An open event by `pid` that asked for `requested`.
pub fn is_open(e: &Value, pid_: u32, requested: &str) -> bool {
    kind(e) == "open" && pid(e) == pid_ as u64 && str_field(e, "requested") == requested
}

/// An exec event by `pid`.
pub fn is_exec(e: &Value, pid_: u32) -> bool {
    kind(e) == "exec" && pid(e) == pid_ as u64
}

/// Whether any string anywhere in the event contains `needle`.
pub fn mentions(e: &Value, needle: &str) -> bool {
    match e {
        Value::String(s) => s.contains(needle),
        Value::Array(a) => a.iter().any(|v| mentions(v, needle)),
        Value::Object(o) => o.values().any(|v| mentions(v, needle)),
        _ => false,
    }
}

/// The events as JSON lines, for panic messages.
pub fn show(events: &[Value]) -> String {
    events
        .iter()
        .map(|e| e.to_string())
        .collect::<Vec<_>>()
        .join("\n")
}
