//! The plain-French (FALC, *facile à lire et à comprendre*) rules the gateway holds citizen
//! text to: sentences of at most [`MAX_WORDS`] words and none of the [`JARGON`] words. One
//! place for both the policies' FALC notices (`guichet policy check`) and the test over the
//! citizen-facing templates.

/// The longest sentence, in words.
pub const MAX_WORDS: usize = 20;

/// Words a citizen should not meet without an explanation (R60–R61), lowercase.
pub const JARGON: &[&str] = &[
    "finalité",
    "base légale",
    "base juridique",
    "responsable de traitement",
    "pseudonym",
    "jeton",
    "token",
    "csrf",
    "jws",
    "horodat",
    "nonobstant",
    "susvisé",
    "afférent",
    "ci-dessus mentionné",
    "heure utc",
];

/// What breaks the rules in `text`, one line each (the offending sentence or word quoted).
pub fn problems(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let lower = text.to_lowercase();
    for word in JARGON {
        if lower.contains(word) {
            out.push(format!("jargon « {word} »"));
        }
    }
    for line in text.lines() {
        for sentence in line.split(['.', '!', '?', ':', ';']) {
            let words = sentence.split_whitespace().filter(|w| w.chars().any(char::is_alphanumeric)).count();
            if words > MAX_WORDS {
                out.push(format!("{words} words (at most {MAX_WORDS}): « {} »", sentence.trim()));
            }
        }
    }
    out
}

/// A FALC text's paragraphs: separated by blank lines, each on one line.
pub fn paragraphs(text: &str) -> Vec<String> {
    text.split("\n\n").map(|p| p.split_whitespace().collect::<Vec<_>>().join(" ")).filter(|p| !p.is_empty()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_sentences_and_jargon_are_reported() {
        assert!(problems("La mairie garde vos données un an. Vous pouvez les voir.").is_empty());
        let long = "un deux trois quatre cinq six sept huit neuf dix onze douze treize quatorze quinze seize \
                    dix-sept dix-huit dix-neuf vingt vingt-et-un.";
        assert_eq!(problems(long).len(), 1);
        assert!(problems("La finalité du traitement.")[0].contains("finalité"));
    }

    #[test]
    fn paragraphs_are_split_on_blank_lines() {
        assert_eq!(paragraphs("Un\ndeux.\n\n  Trois.\n\n"), ["Un deux.", "Trois."]);
    }
}
