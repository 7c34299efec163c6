//! Quality gate: runs the labelled eval set against the demo site's KB and asserts the
//! targets (≥ 80 % of answerable questions answered correctly, ≤ 5 % of all questions answered
//! wrongly), so a KB or tokenizer change that degrades answers fails CI.

use std::path::PathBuf;

use parley_bot::{eval, Answer, KnowledgeBase, Lang};

fn paths() -> (PathBuf, PathBuf) {
    // At run time first: a test binary built by another checkout sharing the target directory
    // (a clean clone) would otherwise read that checkout's files, or fail once it is gone.
    let crate_dir = std::env::var_os("CARGO_MANIFEST_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")));
    (
        crate_dir.join("../demo-site/kb"),
        crate_dir.join("eval/questions.toml"),
    )
}

#[test]
fn demo_kb_meets_quality_targets() {
    let (kb_dir, questions) = paths();
    let kb = KnowledgeBase::load(kb_dir).unwrap();
    let questions = eval::load_questions(&questions, &kb).unwrap();
    assert!(questions.len() >= 80);
    let r = eval::run(&kb, &questions);
    let misses: Vec<String> = r
        .misses
        .iter()
        .map(|m| format!("{:?} -> {:?} ({:.2})", m.question.text, m.got, m.score))
        .collect();
    assert!(
        r.correct_pct() >= 80.0,
        "correct {:.1}%: {misses:#?}",
        r.correct_pct()
    );
    assert!(
        r.wrong_pct() <= 5.0,
        "wrong {:.1}%: {misses:#?}",
        r.wrong_pct()
    );
}

#[test]
fn demo_kb_has_both_languages() {
    let (kb_dir, _) = paths();
    let kb = KnowledgeBase::load(kb_dir).unwrap();
    for lang in [Lang::En, Lang::Ko] {
        assert!(kb.entries().iter().filter(|e| e.lang == lang).count() >= 25);
    }
}

#[test]
fn answers_carry_suggestions_and_never_panic_on_odd_input() {
    let (kb_dir, _) = paths();
    let kb = KnowledgeBase::load(kb_dir).unwrap();
    match kb.answer(
        "how long does delivery take and how much does shipping cost",
        Lang::En,
    ) {
        Answer::Confident {
            suggestions, entry, ..
        } => {
            assert!(suggestions.len() <= 3);
            assert!(suggestions.iter().all(|s| s.id != entry.id));
        }
        other => panic!("{other:?}"),
    }
    for odd in [
        "",
        "   ",
        "???",
        "+++",
        "\"",
        "a",
        "😀😀",
        "AND OR NOT (",
        "가",
    ] {
        for lang in [Lang::En, Lang::Ko] {
            let _ = kb.answer(odd, lang);
        }
    }
    assert!(matches!(kb.answer("", Lang::En), Answer::NotSure { .. }));
}
