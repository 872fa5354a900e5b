//! Bounding an event's payload: an event over the size limit is cut, never refused, and says so.
//! The plugin SDK cuts before an event leaves the plugin, and the host cuts again as the last line
//! of defence; both use this crate, so both say it the same way.
//!
//! The longest strings are shortened until the payload fits; the payload (an object; anything else
//! is wrapped as `{"value": …}`) then carries `"truncated": true` and `"original_bytes": N`, the size
//! of the payload as it came. A payload whose bulk is not in strings (a huge array of numbers) is
//! replaced by that marker and a `preview` of its JSON text.

use serde_json::{Map, Value};

/// Room kept for the marker fields.
const MARKER_BYTES: usize = 64;
/// Shortening rounds before falling back to a preview.
const MAX_ROUNDS: usize = 32;

/// `payload_json` cut to at most `max_bytes` of JSON text, or `None` when it already fits.
pub fn bound_payload(payload_json: &str, max_bytes: usize) -> Option<String> {
    if payload_json.len() <= max_bytes {
        return None;
    }
    let original = payload_json.len();
    let value = serde_json::from_str(payload_json)
        .unwrap_or_else(|_| Value::String(payload_json.to_string()));
    let mut object = match value {
        Value::Object(object) => object,
        other => Map::from_iter([("value".to_string(), other)]),
    };
    object.insert("truncated".into(), Value::Bool(true));
    // A payload that was cut before (a line cut by the SDK) keeps its first original size.
    object
        .entry("original_bytes")
        .or_insert(Value::from(original as u64));
    let mut value = Value::Object(object);
    for _ in 0..MAX_ROUNDS {
        let size = serde_json::to_string(&value).map_or(usize::MAX, |text| text.len());
        if size <= max_bytes {
            return serde_json::to_string(&value).ok();
        }
        let excess = size - max_bytes;
        let Some(longest) = longest_string(&mut value) else {
            break;
        };
        if longest.len() < 2 * MARKER_BYTES {
            break;
        }
        // Escapes make the JSON text longer than the string: cut at least an eighth per round.
        let keep = longest
            .len()
            .saturating_sub(excess.max(longest.len() / 8) + MARKER_BYTES);
        let keep = floor_char_boundary(longest, keep);
        longest.truncate(keep);
        longest.push('…');
    }
    let mut preview_bytes = max_bytes.saturating_sub(2 * MARKER_BYTES) / 2;
    loop {
        let preview = &payload_json[..floor_char_boundary(payload_json, preview_bytes)];
        let fallback = serde_json::json!({
            "truncated": true,
            "original_bytes": original,
            "preview": preview,
        })
        .to_string();
        if fallback.len() <= max_bytes || preview_bytes == 0 {
            return Some(fallback);
        }
        preview_bytes /= 2;
    }
}

/// The longest string anywhere in `value`.
fn longest_string(value: &mut Value) -> Option<&mut String> {
    match value {
        Value::String(text) => Some(text),
        Value::Array(items) => items
            .iter_mut()
            .filter_map(longest_string)
            .max_by_key(|text| text.len()),
        Value::Object(map) => map
            .values_mut()
            .filter_map(longest_string)
            .max_by_key(|text| text.len()),
        _ => None,
    }
}

/// `text` cut to at most `max_bytes` at a character boundary, and how many bytes were cut: the
/// rule for one string (an output line, a stderr tail) that a caller marks itself.
pub fn cut_text(text: &str, max_bytes: usize) -> (&str, usize) {
    let keep = floor_char_boundary(text, max_bytes);
    (&text[..keep], text.len() - keep)
}

fn floor_char_boundary(text: &str, index: usize) -> usize {
    let mut index = index.min(text.len());
    while !text.is_char_boundary(index) {
        index -= 1;
    }
    index
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_is_cut_at_a_character_boundary() {
        assert_eq!(cut_text("é€x", 4), ("é", 4));
        assert_eq!(cut_text("abc", 10), ("abc", 0));
    }

    #[test]
    fn a_small_payload_is_kept() {
        assert_eq!(bound_payload(r#"{"text":"hi"}"#, 100), None);
    }

    #[test]
    fn the_longest_string_is_cut_with_a_marker() {
        let big = "é".repeat(300_000);
        let payload = serde_json::json!({"command": "cat big", "output": big, "exit_code": 0});
        let text = payload.to_string();
        let bounded = bound_payload(&text, 64 << 10).expect("cut");
        assert!(bounded.len() <= 64 << 10, "{}", bounded.len());
        let value: Value = serde_json::from_str(&bounded).unwrap();
        assert_eq!(value["truncated"], true);
        assert_eq!(value["original_bytes"], text.len() as u64);
        assert_eq!(value["command"], "cat big");
        assert_eq!(value["exit_code"], 0);
        assert!(value["output"].as_str().unwrap().len() > 32 << 10);
    }

    #[test]
    fn escapes_and_non_objects_and_numbers_still_fit() {
        let controls = serde_json::to_string(&"\u{1}".repeat(100_000)).unwrap();
        let bounded = bound_payload(&controls, 4096).unwrap();
        assert!(bounded.len() <= 4096);
        let value: Value = serde_json::from_str(&bounded).unwrap();
        assert!(value["value"].is_string());

        let numbers = serde_json::to_string(&vec![1u8; 100_000]).unwrap();
        let bounded = bound_payload(&numbers, 4096).unwrap();
        assert!(bounded.len() <= 4096);
        let value: Value = serde_json::from_str(&bounded).unwrap();
        assert_eq!(value["original_bytes"], numbers.len() as u64);
        assert!(value["preview"].as_str().unwrap().starts_with("[1,1"));

        let not_json = "x".repeat(10_000);
        let value: Value = serde_json::from_str(&bound_payload(&not_json, 1000).unwrap()).unwrap();
        assert_eq!(value["truncated"], true);
    }
}
