//! `parley-bot-eval`: measures the knowledge-base bot on a labelled question set and prints
//! the figures the targets are stated in, a per-miss list, and a threshold sweep for
//! calibrating [`parley_bot::DEFAULT_THRESHOLD`].

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use parley_bot::eval::{self, NONE};
use parley_bot::KnowledgeBase;

/// Command-line arguments.
#[derive(Parser)]
#[command(about = "Evaluate the Parley knowledge-base bot on a labelled question set")]
struct Args {
    /// Knowledge-base directory (Markdown entries).
    #[arg(long)]
    kb: PathBuf,
    /// Question set (TOML, `[[question]]` with text, lang, expect).
    #[arg(long)]
    questions: PathBuf,
    /// Confidence threshold (default: the library's calibrated one).
    #[arg(long)]
    threshold: Option<f32>,
}

fn main() -> ExitCode {
    let args = Args::parse();
    let mut kb = match KnowledgeBase::load(&args.kb) {
        Ok(kb) => kb,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    if let Some(t) = args.threshold {
        kb.set_threshold(t);
    }
    let questions = match eval::load_questions(&args.questions, &kb) {
        Ok(q) => q,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    // A closed pipe (`| head`) ends the report quietly instead of panicking.
    match report(&kb, &questions) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Prints the figures, the misses and the threshold sweep.
fn report(kb: &KnowledgeBase, questions: &[eval::Question]) -> std::io::Result<()> {
    let mut out = std::io::stdout().lock();
    let r = eval::run(kb, questions);
    writeln!(
        out,
        "{} questions ({} answerable, {} out of scope), threshold {:.2}",
        questions.len(),
        r.answerable,
        r.out_of_scope,
        r.threshold
    )?;
    writeln!(
        out,
        "answered correctly:  {:5.1}% of answerable ({}/{})",
        r.correct_pct(),
        r.correct,
        r.answerable
    )?;
    writeln!(
        out,
        "answered wrongly:    {:5.1}% of all ({}/{})",
        r.wrong_pct(),
        r.wrong,
        r.answerable + r.out_of_scope
    )?;
    writeln!(
        out,
        "correctly not sure:  {:5.1}% of out-of-scope ({}/{})",
        r.correctly_not_sure_pct(),
        r.correctly_not_sure,
        r.out_of_scope
    )?;
    writeln!(out, "\nmisses:")?;
    for m in &r.misses {
        let kind = if m.wrong { "WRONG" } else { "unsure" };
        writeln!(
            out,
            "  {kind:6} [{}] {:?} expected {} got {} (score {:.2})",
            m.question.lang.code(),
            m.question.text,
            m.question.expect,
            m.got.as_deref().unwrap_or("-"),
            m.score
        )?;
    }

    // Sweep: the best match per question does not depend on the threshold, so one pass suffices.
    let best: Vec<(Option<String>, f32)> = questions
        .iter()
        .map(|q| {
            kb.best_match(&q.text, q.lang)
                .map_or((None, 0.0), |(e, s)| (Some(e.id.clone()), s))
        })
        .collect();
    writeln!(
        out,
        "\nthreshold sweep (correct% / wrong% / not-sure-on-oos%):"
    )?;
    for step in 4..=16 {
        let t = step as f32 * 0.05;
        let (mut correct, mut wrong, mut oos_ok) = (0, 0, 0);
        for (q, (id, s)) in questions.iter().zip(&best) {
            let confident = *s >= t;
            match (confident, q.expect == NONE) {
                (true, false) if id.as_deref() == Some(q.expect.as_str()) => correct += 1,
                (true, _) => wrong += 1,
                (false, true) => oos_ok += 1,
                (false, false) => {}
            }
        }
        writeln!(
            out,
            "  {t:.2}: {:5.1} / {:4.1} / {:5.1}",
            100.0 * correct as f32 / r.answerable.max(1) as f32,
            100.0 * wrong as f32 / questions.len().max(1) as f32,
            100.0 * oos_ok as f32 / r.out_of_scope.max(1) as f32
        )?;
    }
    Ok(())
}
