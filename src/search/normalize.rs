//! Normalisation of string index values: lower case, accents removed.

/// Folds `s` for case- and accent-insensitive matching (`Zoë` → `zoe`).
pub fn fold(s: &str) -> String {
    use unicode_normalization::UnicodeNormalization;
    s.nfd()
        .filter(|c| !unicode_normalization::char::is_combining_mark(*c))
        .flat_map(char::to_lowercase)
        .collect()
}

#[cfg(test)]
mod tests {
    #[test]
    fn folds_case_and_accents() {
        assert_eq!(super::fold("Zoë ÅNGSTRÖM"), "zoe angstrom");
    }
}
