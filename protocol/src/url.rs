//! What of a page URL may be stored: the address without its query string and fragment, unless
//! the site names query parameters to keep (`keep_query_params`, e.g. `utm_source`).
//!
//! Why: sites put tokens, emails and search terms in query strings and fragments
//! (`/reset?token=…`, `/#access_token=…`); the relay stored them, showed them to every agent and
//! kept them forever. This is the one function that decides what is left, shared by the relay
//! (which applies it before storing anything) and the widget (which may apply it before sending),
//! so the two cannot disagree.
//!
//! Why no URL parser: cutting at `?` and `#` is exact in URL syntax (neither may appear unescaped
//! in a path; the fragment starts at the first `#`, the query at the first `?` before it), it works
//! on relative and malformed input alike, and the widget's bundle stays small.

/// Longest accepted name of a parameter to keep, in bytes.
pub const MAX_PARAM_NAME_BYTES: usize = 64;

/// Why a list of parameters to keep is refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BadKeepParam(pub String);

impl std::fmt::Display for BadKeepParam {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for BadKeepParam {}

/// Checks a `keep_query_params` list: each name 1–64 bytes of ASCII letters, digits and
/// `_ - . [ ]` (what query keys such as `utm_source` or `ids[]` are made of). Anything else
/// (`=`, `&`, spaces, an empty name) could never match a parameter and is most likely a mistake,
/// so it is refused rather than silently keeping nothing.
pub fn check_keep_params<S: AsRef<str>>(names: &[S]) -> Result<(), BadKeepParam> {
    for name in names {
        let name = name.as_ref();
        let ok = !name.is_empty()
            && name.len() <= MAX_PARAM_NAME_BYTES
            && name.bytes().all(|b| {
                b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.' | b'[' | b']')
            });
        if !ok {
            return Err(BadKeepParam(format!(
                "keep_query_params: {name:?} is not a parameter name (1-{MAX_PARAM_NAME_BYTES} of A-Z a-z 0-9 _ - . [ ])"
            )));
        }
    }
    Ok(())
}

/// `url` without its fragment, and without its query string except the parameters named in
/// `keep` (in their original order and spelling). The query is dropped entirely when none of
/// them is present. Names are compared exactly, as they appear before `=`.
///
/// ```
/// use parley_protocol::url::stored_url;
/// let keep = ["utm_source".to_string()];
/// assert_eq!(
///     stored_url("https://shop.example/reset?token=abc&utm_source=mail#x", &keep),
///     "https://shop.example/reset?utm_source=mail"
/// );
/// let none: [&str; 0] = [];
/// assert_eq!(stored_url("https://shop.example/a?token=abc", &none), "https://shop.example/a");
/// ```
pub fn stored_url<S: AsRef<str>>(url: &str, keep: &[S]) -> String {
    let without_fragment = url.split_once('#').map_or(url, |(before, _)| before);
    let Some((base, query)) = without_fragment.split_once('?') else {
        return without_fragment.to_owned();
    };
    let kept: Vec<&str> = query
        .split('&')
        .filter(|pair| {
            let name = pair.split_once('=').map_or(*pair, |(name, _)| name);
            !name.is_empty() && keep.iter().any(|k| k.as_ref() == name)
        })
        .collect();
    if kept.is_empty() {
        base.to_owned()
    } else {
        format!("{base}?{}", kept.join("&"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NONE: [&str; 0] = [];

    #[test]
    fn query_and_fragment_are_dropped_by_default() {
        assert_eq!(
            stored_url("https://a.example/p?email=x%40y.z&t=1#frag", &NONE),
            "https://a.example/p"
        );
        assert_eq!(
            stored_url("https://a.example/#access_token=s", &NONE),
            "https://a.example/"
        );
        assert_eq!(
            stored_url("https://a.example/p", &NONE),
            "https://a.example/p"
        );
        assert_eq!(stored_url("", &NONE), "");
    }

    #[test]
    fn listed_parameters_are_kept_in_order() {
        let keep = ["utm_source", "utm_campaign"];
        assert_eq!(
            stored_url(
                "https://a.example/p?utm_campaign=c&token=s&utm_source=n&utm_source=m#f",
                &keep
            ),
            "https://a.example/p?utm_campaign=c&utm_source=n&utm_source=m"
        );
        // A fragment's `?` is not a query.
        assert_eq!(
            stored_url("https://a.example/p#x?utm_source=n", &keep),
            "https://a.example/p"
        );
        // A name that only starts like a kept one is not kept.
        assert_eq!(
            stored_url("https://a.example/p?utm_source_token=s", &keep),
            "https://a.example/p"
        );
        // A bare flag is kept by name.
        assert_eq!(
            stored_url("https://a.example/p?utm_source&x=1", &keep),
            "https://a.example/p?utm_source"
        );
    }

    #[test]
    fn keep_lists_are_checked() {
        assert!(check_keep_params(&["utm_source", "ids[]", "a.b-c"]).is_ok());
        assert!(check_keep_params(&NONE).is_ok());
        for bad in ["", "a=b", "a&b", "with space", "é", &"x".repeat(65)] {
            assert!(check_keep_params(&[bad]).is_err(), "{bad:?} accepted");
        }
    }
}
