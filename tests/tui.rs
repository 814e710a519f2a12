//! Explorer state, update logic, rendering (ratatui TestBackend snapshots),
//! export, checkpoint discovery, and the App driving the real engine.
//!
//! Snapshots live in tests/snapshots/tui/; run with UPDATE_SNAPSHOTS=1 to
//! (re)write them after an intended change of the layout or of the labels.

use crossterm::event::{KeyCode, KeyEvent, KeyEventKind, KeyEventState, KeyModifiers};
use ratatui::backend::TestBackend;
use ratatui::Terminal;
use semcon::engine::{Event, ExplainMap, JobKey, JobResult, KstarSet, SampleImages};
use semcon::eval::{Clean, PerturbRow, PgdRow};
use semcon::explain::Method;
use semcon::metrics::kstar::{ClassStats, KstarReport, Metric, Summary, Thresholds};
use semcon::metrics::Histogram;
use semcon::model::Tap;
use semcon::perturb::Kind;
use semcon::session;
use semcon::tui::app::{
    App, Command, JobState, KstarShow, KstarView, Meta, Panel, PgdSetting, MESSAGE_TTL,
};
use semcon::tui::image::ColorMode;
use semcon::tui::keys::{self, Action};
use semcon::tui::{export, kview, setup, ui};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

const N: usize = 50;

fn meta(models: &[&str]) -> Meta {
    Meta {
        decoding: None,
        models: models.iter().map(|s| s.to_string()).collect(),
        dataset: "builtin:fashion-mnist".into(),
        samples: N,
        side: 28,
        class_names: semcon::data::FASHION_MNIST_CLASSES
            .iter()
            .map(|s| s.to_string())
            .collect(),
        pgd: [2.0, 4.0, 8.0]
            .iter()
            .map(|e| PgdSetting {
                eps: e / 255.0,
                step: 2.0 / 255.0,
                iters: 10,
            })
            .collect(),
        device: "cpu (2 threads)".into(),
        color: ColorMode::TrueColor,
        demo: None,
        checkpoints: models
            .iter()
            .map(|m| format!("checkpoints/{m}.safetensors"))
            .collect(),
        seed: 0,
        taps: vec![],
    }
}

fn done(app: &mut App, key: JobKey, r: JobResult) {
    assert!(app.on_event(Event::Done {
        key,
        result: Arc::new(r),
    }));
}

fn clean(acc: f64) -> JobResult {
    JobResult::Clean(Clean {
        logits: vec![0.0; N * 10],
        num_classes: 10,
        preds: (0..N as u32).map(|i| i % 10).collect(),
        accuracy: acc,
    })
}

fn row(kind: Kind, level: usize, acc: f64, ds: f64) -> JobResult {
    JobResult::Perturb(PerturbRow {
        name: kind.name().into(),
        level,
        param: kind.param(level, 28),
        label: kind.param_label(level, 28),
        accuracy: acc,
        ds_mean: ds,
        ds_median: ds * 0.8,
        discontinuity_rate: 0.125,
        ds_histogram: Histogram {
            lo: 0.0,
            hi: ds * 3.0,
            counts: vec![9, 14, 10, 6, 4, 3, 2, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
        },
        ds_histogram_log: semcon::metrics::LogHistogram::auto(
            &(0..N).map(|i| i as f64 * 0.1 * ds).collect::<Vec<_>>(),
            20,
        ),
        ds: (0..N).map(|i| i as f32 * 0.1).collect(),
        preds: (0..N as u32).map(|i| (i + 1) % 10).collect(),
        kstar: None,
    })
}

fn pgd(acc: f64) -> JobResult {
    JobResult::Pgd(PgdRow {
        eps: 8.0 / 255.0,
        step: 2.0 / 255.0,
        iters: 10,
        random_start: false,
        accuracy: acc,
        preds: vec![0; N],
        kstar: None,
    })
}

/// The one place that builds a k* report (adapt here when its type changes).
fn kstar(skews: &[f64]) -> JobResult {
    let classes: Vec<ClassStats> = skews
        .iter()
        .enumerate()
        .map(|(i, &s)| ClassStats {
            class: i as u32,
            name: semcon::data::FASHION_MNIST_CLASSES[i].into(),
            n: 5,
            mean: 0.2 + 0.05 * i as f64,
            std: 0.1,
            skew: Some(s),
            pattern: Thresholds::default().classify(Some(s)),
            accuracy: None,
            histogram: Histogram {
                lo: 0.0,
                hi: 1.0,
                counts: vec![5, 3, 2, 1, 1, 0, 0, 1, 0, 2],
            },
            histogram_correct: None,
            histogram_wrong: None,
        })
        .collect();
    JobResult::Kstar(KstarReport {
        layer: "logits".into(),
        metric: Metric::Euclidean,
        summary: Summary::of(&classes),
        classes,
    })
}

fn sample(kind: Kind, level: usize) -> JobResult {
    let _ = (kind, level);
    let (h, w) = (28, 28);
    let mut original = vec![0.0f32; 3 * h * w];
    for y in 0..h {
        for x in 0..w {
            original[y * w + x] = x as f32 / w as f32;
            original[h * w + y * w + x] = y as f32 / h as f32;
        }
    }
    let perturbed = original.iter().map(|v| 1.0 - v).collect();
    JobResult::Sample(SampleImages {
        channels: 3,
        height: h,
        width: w,
        original,
        perturbed,
        label: 4,
    })
}

/// Every number the first view needs, for every model, plus PGD and k*.
fn filled(models: &[&str]) -> App {
    let mut app = App::new(meta(models));
    let (kind, level) = app.current();
    let sk = app.sample_key();
    done(&mut app, sk, sample(kind, level));
    for m in 0..models.len() {
        done(
            &mut app,
            JobKey::Clean { model: m },
            clean(0.9 - 0.05 * m as f64),
        );
        for l in 1..=kind.levels() {
            let key = JobKey::Perturb {
                model: m,
                kind,
                level: l,
            };
            done(
                &mut app,
                key,
                row(
                    kind,
                    l,
                    0.85 - 0.1 * l as f64 + 0.02 * m as f64,
                    0.5 * l as f64,
                ),
            );
        }
        for e in 0..3 {
            done(
                &mut app,
                JobKey::Pgd {
                    model: m,
                    eps_index: e,
                },
                pgd(0.6 - 0.2 * e as f64),
            );
        }
        let k = app.kstar_key(m);
        done(
            &mut app,
            k,
            kstar(&[1.2, 0.7, 0.1, -0.2, -0.9, 2.0, 0.0, 0.3, 0.6, -1.0]),
        );
    }
    app
}

fn key(c: KeyCode) -> KeyEvent {
    KeyEvent {
        code: c,
        modifiers: KeyModifiers::NONE,
        kind: KeyEventKind::Press,
        state: KeyEventState::NONE,
    }
}

// ---------------------------------------------------------------- state

#[test]
fn wanted_is_in_priority_order() {
    let mut app = App::new(meta(&["a", "b"]));
    app.model = 1;
    let (kind, level) = app.current();
    let w = app.wanted();
    assert_eq!(w[0], app.sample_key());
    assert_eq!(
        w[1..3],
        [
            JobKey::Sample {
                kind,
                level,
                index: 1
            },
            JobKey::Sample {
                kind,
                level,
                index: N - 1
            }
        ],
        "the neighbouring samples"
    );
    let w = w[2..].to_vec();
    assert_eq!(w[1], JobKey::Clean { model: 1 }, "selected model first");
    assert_eq!(
        w[2],
        JobKey::Perturb {
            model: 1,
            kind,
            level
        }
    );
    assert_eq!(w[3], JobKey::Clean { model: 0 });
    assert_eq!(
        w[4],
        JobKey::Perturb {
            model: 0,
            kind,
            level
        }
    );
    // then the other levels of the current kind, nearest first
    assert_eq!(
        w[5],
        JobKey::Perturb {
            model: 1,
            kind,
            level: level + 1
        }
    );
    let pos = |k: &JobKey| w.iter().position(|x| x == k).unwrap();
    let other_level = pos(&JobKey::Perturb {
        model: 0,
        kind,
        level: kind.levels(),
    });
    let kst = pos(&app.kstar_key(0));
    let pgd = pos(&JobKey::Pgd {
        model: 0,
        eps_index: 0,
    });
    let other_kind = pos(&JobKey::Perturb {
        model: 0,
        kind: Kind::ALL[1],
        level: 1,
    });
    assert!(other_level < kst && kst < pgd && pgd < other_kind);
    // no duplicates; every level of every kind for every model is prefetched
    let mut d = w.clone();
    d.sort_by_key(|k| format!("{k:?}"));
    d.dedup();
    assert_eq!(d.len(), w.len());
    let perturb = w
        .iter()
        .filter(|k| matches!(k, JobKey::Perturb { .. }))
        .count();
    assert_eq!(perturb, app.items.len() * 2);
}

#[test]
fn request_stops_after_the_first_unfinished_tier() {
    let mut app = App::new(meta(&["a"]));
    let (kind, level) = app.current();
    let r = app.request();
    assert_eq!(
        r.len(),
        5,
        "sample and its neighbours, clean, current level: {r:?}"
    );
    let sk = app.sample_key();
    done(&mut app, sk, sample(kind, level));
    done(&mut app, JobKey::Clean { model: 0 }, clean(0.9));
    assert_eq!(app.request().len(), 5);
    done(
        &mut app,
        JobKey::Perturb {
            model: 0,
            kind,
            level,
        },
        row(kind, level, 0.8, 1.0),
    );
    assert!(
        app.view_ready(),
        "the neighbouring samples do not hold the view"
    );
    // tier 2 (other levels) is now asked for
    let r = app.request();
    assert_eq!(r.len(), 5 + kind.levels() - 1);
    assert!(!r.iter().any(|k| matches!(k, JobKey::Pgd { .. })));
}

#[test]
fn moving_on_drops_expensive_jobs_from_the_request() {
    // Everything of the first view is done and PGD runs; moving to another
    // perturbation must leave PGD out of the request so the engine supersedes it.
    let mut app = filled(&["a"]);
    // make PGD unfinished again
    app.results.retain(|k, _| !matches!(k, JobKey::Pgd { .. }));
    let r = app.request();
    assert!(r.contains(&JobKey::Pgd {
        model: 0,
        eps_index: 0
    }));
    app.requested = r;
    app.on_event(Event::Progress {
        key: JobKey::Pgd {
            model: 0,
            eps_index: 0,
        },
        done: 3,
        total: N,
    });
    assert!(matches!(
        app.state(&JobKey::Pgd {
            model: 0,
            eps_index: 0
        }),
        JobState::Running { done: 3, .. }
    ));
    for _ in 0..=Kind::ALL[0].levels() {
        app.update(Action::Down);
    }
    assert_ne!(app.kind(), Kind::ALL[0]);
    let r = app.take_request().expect("the request changed");
    assert!(!r.iter().any(|k| matches!(k, JobKey::Pgd { .. })));
    // the stale progress no longer shows as running
    assert!(matches!(
        app.state(&JobKey::Pgd {
            model: 0,
            eps_index: 0
        }),
        JobState::Idle
    ));
    assert!(
        app.take_request().is_none(),
        "unchanged request is not resent"
    );
}

#[test]
fn results_are_stored_under_their_own_key_only() {
    let mut app = App::new(meta(&["a"]));
    let (kind, _) = app.current();
    // A perturbation row for level 2 sent under a level-3 key is ignored.
    let wrong = JobKey::Perturb {
        model: 0,
        kind,
        level: 3,
    };
    assert!(!app.on_event(Event::Done {
        key: wrong,
        result: Arc::new(row(kind, 2, 0.5, 1.0)),
    }));
    assert!(app.perturb(0, kind, 3).is_none());
    // A clean result under a PGD key is ignored.
    assert!(!app.on_event(Event::Done {
        key: JobKey::Pgd {
            model: 0,
            eps_index: 0
        },
        result: Arc::new(clean(0.5)),
    }));
    assert!(app.results.is_empty());
    // The right one is kept and shown only for its key.
    done(&mut app, JobKey::Clean { model: 0 }, clean(0.75));
    assert_eq!(app.clean(0).unwrap().accuracy, 0.75);
    assert!(app.clean(1).is_none());
}

#[test]
fn failures_are_reported_and_not_asked_again() {
    let mut app = App::new(meta(&["a"]));
    let k = JobKey::Clean { model: 0 };
    app.on_event(Event::Failed {
        key: k,
        error: "boom".into(),
    });
    assert!(matches!(app.state(&k), JobState::Failed("boom")));
    assert!(!app.wanted().contains(&k));
    assert!(app.message.as_ref().unwrap().0.contains("boom"));
}

#[test]
fn levels_items_models_samples_layers() {
    let mut app = App::new(meta(&["a", "b", "c"]));
    let first = app.kind();
    assert_eq!(app.level(), 1);
    app.update(Action::Left);
    assert_eq!(app.level(), 1, "clamped at level 1");
    for _ in 0..10 {
        app.update(Action::Right);
    }
    assert_eq!((app.kind(), app.level()), (first, first.levels()));
    app.update(Action::Level(2));
    assert_eq!(app.level(), 2);
    app.update(Action::Up);
    app.update(Action::Up);
    assert_eq!(app.item, app.items.len() - 1, "the list wraps");
    // every item names its parameter
    assert_eq!(
        app.items.len(),
        Kind::ALL.iter().map(|k| k.levels()).sum::<usize>()
    );
    app.update(Action::NextModel);
    app.update(Action::NextModel);
    assert_eq!(app.model, 2);
    app.update(Action::NextModel);
    assert_eq!(app.model, 0);
    app.update(Action::PrevModel);
    assert_eq!(app.model, 2);
    app.update(Action::PrevSample);
    assert_eq!(app.sample, N - 1);
    app.update(Action::NextSample);
    assert_eq!(app.sample, 0);
    assert_eq!(app.tap, Tap::Logits);
    app.update(Action::NextLayer);
    assert_eq!(app.tap, Tap::Penultimate);
    app.update(Action::PrevLayer);
    app.update(Action::PrevLayer);
    assert_eq!(app.tap, Tap::Layer(4));
    app.update(Action::NextMetric);
    assert_eq!(app.metric, Metric::Cityblock);
    assert_eq!(
        app.kstar_key(0),
        JobKey::Kstar {
            model: 0,
            tap: Tap::Layer(4),
            metric: Metric::Cityblock,
            on: KstarSet::Clean,
        }
    );
}

/// `v` cycles the set whose k* is shown: clean, the selected perturbation
/// and level (following the list), each PGD setting, clean again; the clean
/// set's k* is asked for beside it, and the panel shows clean→shown.
#[test]
fn kstar_follows_the_selected_set() {
    let mut app = filled(&["a"]);
    assert_eq!(app.kstar_on, KstarView::Clean);
    app.update(Action::CycleKstarSet);
    assert_eq!(app.kstar_on, KstarView::Current);
    let (kind, level) = app.current();
    let on = |app: &App| match app.kstar_key(0) {
        JobKey::Kstar { on, .. } => on,
        other => panic!("{other:?}"),
    };
    assert_eq!(on(&app), KstarSet::Perturb { kind, level });
    app.update(Action::Down);
    let (kind2, level2) = app.current();
    assert_eq!(
        on(&app),
        KstarSet::Perturb {
            kind: kind2,
            level: level2
        }
    );
    let wanted: Vec<JobKey> = app.tiers().concat();
    assert!(wanted.contains(&app.kstar_key(0)));
    assert!(wanted.contains(&app.kstar_clean_key(0)));
    for i in 0..app.meta.pgd.len() {
        app.update(Action::CycleKstarSet);
        assert_eq!(app.kstar_on, KstarView::Pgd(i));
        assert_eq!(on(&app), KstarSet::Pgd { eps_index: i });
    }
    app.update(Action::CycleKstarSet);
    assert_eq!(app.kstar_on, KstarView::Clean);
    // Shown beside the clean distribution: "clean→shown" counts.
    app.update(Action::CycleKstarSet);
    let clean_key = app.kstar_clean_key(0);
    done(&mut app, clean_key, kstar(&[1.0, 0.0, -1.0]));
    let shown_key = app.kstar_key(0);
    done(&mut app, shown_key, kstar(&[1.0, 1.0, 1.0]));
    let screen = draw(&app, 220, 60);
    assert!(screen.contains("1→3"), "{screen}");
    assert!(screen.contains(&app.label(kind2, level2)), "{screen}");
}

#[test]
fn arrows_act_on_the_focused_panel() {
    let mut app = filled(&["a", "b"]);
    app.update(Action::NextPanel);
    assert_eq!(app.focus, Panel::Accuracy);
    app.update(Action::Down);
    assert_eq!(app.model, 1, "accuracy panel: up/down picks the model");
    app.update(Action::Right);
    assert_eq!(app.level(), 2, "left/right changes the level");
    app.focus = Panel::Kstar;
    app.update(Action::Down);
    assert_eq!(app.kstar_scroll, 1);
    app.update(Action::Right);
    assert_eq!(app.tap, Tap::Penultimate);
    assert_eq!(app.kstar_scroll, 0);
    app.focus = Panel::Sample;
    app.update(Action::Down);
    assert_eq!(app.sample, 1);
    app.update(Action::PrevPanel);
    assert_eq!(app.focus, Panel::Kstar);
    for _ in 0..Panel::ALL.len() {
        app.update(Action::NextPanel);
    }
    assert_eq!(app.focus, Panel::Kstar);
}

#[test]
fn help_quit_and_export_commands() {
    let mut app = App::new(meta(&["a"]));
    assert_eq!(app.update(Action::Help), None);
    assert!(app.help);
    // any key closes the help without acting
    let item = app.item;
    assert_eq!(app.update(Action::Down), None);
    assert!(!app.help);
    assert_eq!(app.item, item);
    app.update(Action::Help);
    assert_eq!(app.update(Action::Back), None, "Esc closes the help");
    assert!(!app.help);
    assert_eq!(app.update(Action::Back), Some(Command::Quit));
    app.update(Action::Help);
    assert_eq!(app.update(Action::Quit), Some(Command::Quit));
    app.help = false;
    assert_eq!(app.update(Action::Export), Some(Command::Export));
}

#[test]
fn key_map() {
    let ctrl_c = KeyEvent {
        code: KeyCode::Char('c'),
        modifiers: KeyModifiers::CONTROL,
        kind: KeyEventKind::Press,
        state: KeyEventState::NONE,
    };
    assert_eq!(keys::action(ctrl_c), Some(Action::Quit));
    let cases = [
        (KeyCode::Char('q'), Action::Quit),
        (KeyCode::Esc, Action::Back),
        (KeyCode::Char('?'), Action::Help),
        (KeyCode::Up, Action::Up),
        (KeyCode::Char('k'), Action::Up),
        (KeyCode::Down, Action::Down),
        (KeyCode::Char('j'), Action::Down),
        (KeyCode::Left, Action::Left),
        (KeyCode::Char('h'), Action::Left),
        (KeyCode::Right, Action::Right),
        (KeyCode::Char('l'), Action::Right),
        (KeyCode::Tab, Action::NextPanel),
        (KeyCode::BackTab, Action::PrevPanel),
        (KeyCode::Char('m'), Action::NextModel),
        (KeyCode::Char('n'), Action::NextSample),
        (KeyCode::Char('p'), Action::PrevSample),
        (KeyCode::Char('t'), Action::NextLayer),
        (KeyCode::Char('d'), Action::NextMetric),
        (KeyCode::Char('e'), Action::Export),
        (KeyCode::Char('3'), Action::Level(3)),
        (KeyCode::Char(' '), Action::ToggleDemo),
    ];
    for (c, a) in cases {
        assert_eq!(keys::action(key(c)), Some(a), "{c:?}");
    }
    assert_eq!(keys::action(key(KeyCode::Char('z'))), None);
    let mut release = key(KeyCode::Char('q'));
    release.kind = KeyEventKind::Release;
    assert_eq!(keys::action(release), None);
    // the footer names the essential keys
    for k in ["Tab", "m model", "n/p", "e export", "? help", "q quit"] {
        assert!(keys::FOOTER.contains(k), "{k}");
    }
}

#[test]
fn demo_advances_when_numbers_are_in() {
    let mut m = meta(&["a"]);
    m.demo = Some(Duration::from_secs(2));
    let mut app = App::new(m);
    let t0 = app.demo.as_ref().unwrap().last;
    assert!(!app.tick(t0 + Duration::from_secs(1)));
    // not ready: waits up to 4 periods
    assert!(!app.tick(t0 + Duration::from_secs(3)));
    assert_eq!(app.item, 0);
    assert!(app.tick(t0 + Duration::from_secs(9)));
    assert_eq!(app.item, 1);
    // ready: advances after one period
    let app2 = filled(&["a"]);
    let mut app2 = App {
        demo: Some(semcon::tui::app::Demo {
            period: Duration::from_secs(2),
            last: t0,
            paused: false,
        }),
        ..app2
    };
    assert!(app2.tick(t0 + Duration::from_secs(2)));
    assert_eq!(app2.item, 1);
    // paused: stays
    app2.update(Action::ToggleDemo);
    assert!(!app2.tick(t0 + Duration::from_secs(60)));
    assert_eq!(app2.item, 1);
}

#[test]
fn messages_expire() {
    let mut app = App::new(meta(&["a"]));
    let t = Instant::now();
    app.set_message("hello", t);
    assert!(!app.tick(t + Duration::from_millis(10)));
    assert!(app.message.is_some());
    assert!(app.tick(t + MESSAGE_TTL));
    assert!(app.message.is_none());
}

#[test]
fn running_job_is_inferred_before_its_first_batch() {
    let mut app = App::new(meta(&["a"]));
    let r = app.take_request().unwrap();
    assert_eq!(app.running().unwrap().key, r[0]);
    assert!(matches!(
        app.state(&r[0]),
        JobState::Running { done: 0, .. }
    ));
    assert!(matches!(app.state(&r[1]), JobState::Queued));
    app.on_event(Event::Progress {
        key: r[1],
        done: 10,
        total: N,
    });
    assert_eq!(app.running().unwrap().done, 10);
    app.on_event(Event::Speed {
        images_per_sec: 123.0,
    });
    assert_eq!(app.speed, Some(123.0));
}

#[test]
fn kstar_view_patterns_and_groups() {
    let JobResult::Kstar(r) = kstar(&[1.2, 0.7, 0.1, -0.2, -0.9]) else {
        unreachable!()
    };
    let cls = kview::classes(&r);
    let letters: Vec<char> = cls.iter().map(|c| c.pattern.unwrap()).collect();
    assert_eq!(letters, vec!['A', 'A', 'B', 'B', 'C']);
    let g = kview::groups(&r);
    assert_eq!((g[0].count, g[1].count, g[2].count), (2, 2, 1));
    assert!((g[0].skew - 0.95).abs() < 1e-12);
    assert_eq!(kview::sparkline(&[0, 1, 2, 4], 4), " ▂▄█");
    assert_eq!(kview::sparkline(&[1, 1, 1, 1], 2).chars().count(), 2);
}

// ------------------------------------------------------------ rendering

fn draw(app: &App, w: u16, h: u16) -> String {
    let mut t = Terminal::new(TestBackend::new(w, h)).unwrap();
    let started = Instant::now();
    t.draw(|f| ui::render(f, app)).unwrap();
    let elapsed = started.elapsed();
    assert!(
        elapsed < Duration::from_millis(200),
        "a frame took {elapsed:?}"
    );
    let buf = t.backend().buffer().clone();
    let mut out = String::new();
    for y in 0..buf.area.height {
        let mut line = String::new();
        for x in 0..buf.area.width {
            line.push_str(buf[(x, y)].symbol());
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

fn snapshot(name: &str, got: &str) {
    let p = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/snapshots/tui")
        .join(format!("{name}.txt"));
    if std::env::var_os("UPDATE_SNAPSHOTS").is_some() || !p.exists() {
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(&p, got).unwrap();
        if std::env::var_os("UPDATE_SNAPSHOTS").is_some() {
            return;
        }
    }
    let want = std::fs::read_to_string(&p).unwrap();
    if want != got {
        let diff: Vec<String> = want
            .lines()
            .zip(got.lines())
            .enumerate()
            .filter(|(_, (a, b))| a != b)
            .take(5)
            .map(|(i, (a, b))| format!("line {i}:\n  want {a}\n  got  {b}"))
            .collect();
        panic!(
            "snapshot {name} differs (UPDATE_SNAPSHOTS=1 rewrites it):\n{}\n\nfull output:\n{got}",
            diff.join("\n")
        );
    }
}

#[test]
fn snapshot_wide_compare() {
    let app = filled(&["standard", "continuity", "adv", "adv-continuity"]);
    let s = draw(&app, 160, 45);
    for needle in [
        "Perturbations",
        "Accuracy",
        "Distance score",
        "PGD",
        "k* distribution",
        "Sample",
        "standard",
        "adv-continuity",
        "90.0%",
        "true label: Coat",
        "▀",
        "A frac.",
    ] {
        assert!(s.contains(needle), "{needle} missing:\n{s}");
    }
    snapshot("wide_compare", &s);
}

#[test]
fn snapshot_wide_single_model() {
    let app = filled(&["standard"]);
    snapshot("wide_single", &draw(&app, 150, 40));
}

#[test]
fn snapshot_compact_focus_cycles_bottom_panel() {
    let mut app = filled(&["standard", "adv"]);
    let s = draw(&app, 100, 30);
    assert!(s.contains("Distance score"));
    snapshot("compact_ds", &s);
    app.focus = Panel::Kstar;
    let s = draw(&app, 100, 30);
    assert!(s.contains("k* distribution") && !s.contains("Distance score"));
    snapshot("compact_kstar", &s);
    app.focus = Panel::Sample;
    let s = draw(&app, 100, 30);
    assert!(s.contains("true label"));
    app.focus = Panel::Pgd;
    let s = draw(&app, 100, 30);
    assert!(s.contains("ε 8/255"));
}

#[test]
fn snapshot_empty_and_progress() {
    let mut app = App::new(meta(&["standard", "adv"]));
    app.take_request().unwrap();
    app.on_event(Event::Progress {
        key: JobKey::Clean { model: 0 },
        done: 20,
        total: N,
    });
    let s = draw(&app, 120, 34);
    assert!(s.contains("computing clean [standard]"), "{s}");
    // progress is a bar (2 of 5 cells at 40%), never a number like an accuracy
    assert!(s.contains("██░░░"), "{s}");
    assert!(!s.contains("40%"), "{s}");
    snapshot("empty_progress", &s);
}

/// Model 0's clean pass running, 20 of N samples done; its key.
fn clean_running(app: &mut App) -> JobKey {
    app.take_request().unwrap();
    let key = JobKey::Clean { model: 0 };
    app.on_event(Event::Progress {
        key,
        done: 20,
        total: N,
    });
    key
}

/// A clean result over the first 20 samples.
fn partial_clean(acc: f64) -> Arc<JobResult> {
    Arc::new(JobResult::Clean(Clean {
        logits: vec![0.0; 20 * 10],
        num_classes: 10,
        preds: (0..20u32).map(|i| i % 10).collect(),
        accuracy: acc,
    }))
}

#[test]
fn snapshot_partial_accuracy() {
    // The first batches of the selected model's clean pass are in: the
    // accuracy so far shows, marked "…", and the title says over how many
    // samples; the final number replaces it unmarked.
    let mut app = App::new(meta(&["standard", "adv"]));
    let key = clean_running(&mut app);
    let partial = partial_clean;
    assert!(app.on_event(Event::Partial {
        key,
        result: partial(0.9)
    }));
    assert_eq!(app.partial_samples(&key), Some(20));
    let s = draw(&app, 160, 45);
    assert!(s.contains("90.0%…"), "{s}");
    assert!(s.contains("… so far: 20/50"), "{s}");
    snapshot("partial_accuracy", &s);
    // At the minimum size the count stays whole; the title's start gives way.
    let small = draw(&app, 80, 24);
    assert!(small.contains("so far: 20/50 "), "{small}");
    // 100 % keeps its mark within the column.
    app.on_event(Event::Partial {
        key,
        result: partial(1.0),
    });
    let s = draw(&app, 160, 45);
    assert!(s.contains("100%…") && !s.contains("100.0%"), "{s}");
    // The final number, unmarked.
    done(&mut app, key, clean(0.88));
    assert_eq!(app.partial_samples(&key), None);
    let s = draw(&app, 160, 45);
    assert!(s.contains("88.0%") && !s.contains("88.0%…"), "{s}");
    assert!(!s.contains("so far"), "{s}");
}

#[test]
fn a_partial_perturbation_row_shows_no_final_looking_numbers() {
    // A perturbation job over its first samples: the accuracy cell is marked,
    // Δ, median and discontinuity (final numbers only) stay empty, and the
    // histogram says how many samples it holds.
    let mut app = filled(&["standard"]);
    let (kind, level) = app.current();
    let key = JobKey::Perturb {
        model: 0,
        kind,
        level,
    };
    app.results.remove(&key);
    app.take_request();
    app.on_event(Event::Progress {
        key,
        done: 10,
        total: N,
    });
    let JobResult::Perturb(mut r) = row(kind, level, 0.5, 1.0) else {
        unreachable!()
    };
    r.ds_median = 0.123;
    r.discontinuity_rate = 0.321;
    r.ds_histogram.counts = vec![10; 1];
    r.preds.truncate(10);
    r.ds.truncate(10);
    assert!(app.on_event(Event::Partial {
        key,
        result: Arc::new(JobResult::Perturb(r)),
    }));
    let s = draw(&app, 160, 45);
    assert!(s.contains("50.0%…"), "{s}");
    assert!(s.contains("… so far: 10/50"), "{s}");
    assert!(!s.contains("0.123") && !s.contains("32.1%"), "{s}");
    assert!(s.contains("DS histogram · so far 10/50 ·"), "{s}");
}

#[test]
fn the_trace_sees_an_accuracy_not_a_progress() {
    use ratatui::buffer::Buffer;
    assert!(!semcon::tui::shows_accuracy(&Buffer::with_lines([
        "clean ██░░░",
        "12/2000"
    ])));
    assert!(semcon::tui::shows_accuracy(&Buffer::with_lines([
        "model clean",
        "▶ std  91.2%…"
    ])));
}

#[test]
fn snapshot_help_overlay() {
    let mut app = filled(&["standard"]);
    app.help = true;
    let s = draw(&app, 120, 36);
    assert!(s.contains("Help — keys") && s.contains("Ctrl-C"));
    snapshot("help", &s);
}

#[test]
fn too_small_shows_a_message() {
    let app = filled(&["standard"]);
    let s = draw(&app, 60, 20);
    assert!(s.contains("Terminal too small"), "{s}");
    assert!(s.contains("at least 80x24"));
    snapshot("too_small", &s);
    // degenerate sizes do not panic
    for (w, h) in [(1, 1), (5, 3), (79, 40), (200, 23), (80, 24), (300, 100)] {
        draw(&app, w, h);
    }
}

#[test]
fn every_size_and_focus_renders() {
    let mut app = filled(&["standard", "continuity", "adv", "adv-continuity"]);
    for &focus in &Panel::ALL {
        app.focus = focus;
        for (w, h) in [(80, 24), (100, 30), (139, 31), (140, 32), (220, 60)] {
            let s = draw(&app, w, h);
            assert!(s.contains("semcon"), "{w}x{h} {focus:?}");
        }
    }
}

#[test]
fn ansi256_fallback_colours() {
    let mut app = filled(&["standard"]);
    app.meta.color = ColorMode::Ansi256;
    let mut t = Terminal::new(TestBackend::new(160, 45)).unwrap();
    t.draw(|f| ui::render(f, &app)).unwrap();
    let buf = t.backend().buffer();
    let cells: Vec<_> = buf.content().iter().filter(|c| c.symbol() == "▀").collect();
    assert!(!cells.is_empty());
    assert!(cells
        .iter()
        .all(|c| matches!(c.fg, ratatui::style::Color::Indexed(_))));
    app.meta.color = ColorMode::TrueColor;
    t.draw(|f| ui::render(f, &app)).unwrap();
    let buf = t.backend().buffer();
    assert!(buf
        .content()
        .iter()
        .filter(|c| c.symbol() == "▀")
        .all(|c| matches!(c.fg, ratatui::style::Color::Rgb(..))));
}

// --------------------------------------------------------------- export

fn temp_dir(name: &str) -> PathBuf {
    // Under cargo's test tmpdir (target/), not the system's: nothing left in /tmp.
    let d = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("semcon-tui-{name}"));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

#[test]
fn export_writes_json_and_pngs() {
    let app = filled(&["standard", "adv"]);
    let base = temp_dir("export");
    let e = export::export(&app, &base).unwrap();
    assert!(e.dir.starts_with(&base));
    for f in [
        "view.json",
        "accuracy.png",
        "ds.png",
        "pgd.png",
        "kstar.png",
        "kstar_violins.png",
        "sample.png",
    ] {
        assert!(e.files.iter().any(|x| x == f), "{f} in {:?}", e.files);
        assert!(e.dir.join(f).is_file());
    }
    for f in e.files.iter().filter(|f| f.ends_with(".png")) {
        let img = image::open(e.dir.join(f)).unwrap();
        assert!(img.width() > 100 && img.height() > 50, "{f}");
    }
    // Written atomically: no temporary file is left beside them.
    for entry in std::fs::read_dir(&e.dir).unwrap() {
        let name = entry.unwrap().file_name().to_string_lossy().into_owned();
        assert!(!name.ends_with(".tmp"), "{name} left behind");
    }
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(e.dir.join("view.json")).unwrap()).unwrap();
    assert_eq!(v["models"]["standard"]["clean_accuracy"], 0.9);
    assert_eq!(
        v["models"]["adv"]["levels"].as_array().unwrap().len(),
        app.kind().levels()
    );
    assert_eq!(v["models"]["adv"]["pgd"][2]["eps_label"], "8/255");
    assert_eq!(v["models"]["standard"]["kstar"]["patterns"][0]["count"], 4);
    assert_eq!(v["checkpoints"][1], "checkpoints/adv.safetensors");
    assert_eq!(v["seed"], 0);
    assert!(v["kstar_patterns"]["A"]
        .as_str()
        .unwrap()
        .starts_with("fractured"));
    let pgd = &v["models"]["adv"]["pgd"][2];
    assert_eq!(pgd["final"], true);
    assert_eq!(pgd["samples"].as_u64(), Some(app.meta.samples as u64));
    assert!(
        e.summary().contains("exported to /"),
        "absolute: {}",
        e.summary()
    );
    assert!(
        e.summary().ends_with("(view.json + 6 charts)"),
        "{}",
        e.summary()
    );
    // a second export goes to a new directory
    let e2 = export::export(&app, &base).unwrap();
    assert_ne!(e.dir, e2.dir);
    // with nothing computed only the JSON is written
    let empty = App::new(meta(&["a"]));
    let e3 = export::export(&empty, &base).unwrap();
    assert_eq!(e3.files, vec!["view.json".to_string()]);
    let v3: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(e3.dir.join("view.json")).unwrap()).unwrap();
    let pgd = v3["models"]["a"]["pgd"].as_array().unwrap();
    assert!(!pgd.is_empty());
    for p in pgd {
        assert_eq!(
            (&p["final"], &p["accuracy"], &p["samples"]),
            (
                &serde_json::json!(false),
                &serde_json::Value::Null,
                &serde_json::Value::Null
            )
        );
    }
    if std::env::var_os("SEMCON_TEST_KEEP").is_some() {
        eprintln!("kept {}", e.dir.display());
    } else {
        std::fs::remove_dir_all(&base).unwrap();
    }
}

#[test]
fn the_minimum_size_keeps_names_and_numbers_whole() {
    // 80x24 with the four shipped variants: the paper's short names (not
    // "adv" and "adv-" cut from adv and adv-continuity), level numbers
    // instead of cut parameter labels, and the whole footer.
    let app = filled(&["standard", "continuity", "adv", "adv-continuity"]);
    let s = draw(&app, 80, 24);
    for want in [
        "▶ std ", "  C ", "  Adv ", "  AdvC ", " L1 ", " L4 ", "q quit",
    ] {
        assert!(s.contains(want), "{want:?} missing:\n{s}");
    }
    assert!(
        !s.contains("adv-continuity") && !s.contains("+16/25 "),
        "{s}"
    );
    // Wide enough: the full names and labels.
    let s = draw(&app, 200, 50);
    for want in ["▶ standard", "adv-continuity", "+16/255", "+64/255"] {
        assert!(s.contains(want), "{want:?} missing:\n{s}");
    }
}

#[test]
fn export_marks_numbers_still_computing() {
    // The clean pass has streamed 20 of 50 samples: view.json gives the
    // number with its sample count and final = false; the charts leave it out.
    let mut app = App::new(meta(&["standard"]));
    let key = clean_running(&mut app);
    app.on_event(Event::Partial {
        key,
        result: partial_clean(0.85),
    });
    let base = temp_dir("export_partial");
    let e = export::export(&app, &base).unwrap();
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(e.dir.join("view.json")).unwrap()).unwrap();
    let m = &v["models"]["standard"];
    assert_eq!(m["clean_accuracy"], 0.85);
    assert_eq!(m["clean_samples"], 20);
    assert_eq!(m["clean_final"], false);
    assert!(
        !e.files.iter().any(|f| f == "accuracy.png"),
        "{:?}",
        e.files
    );
    // Once done: final, over every sample, and charted.
    done(&mut app, key, clean(0.88));
    let e = export::export(&app, &base).unwrap();
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(e.dir.join("view.json")).unwrap()).unwrap();
    assert_eq!(v["models"]["standard"]["clean_final"], true);
    assert_eq!(v["models"]["standard"]["clean_accuracy"], 0.88);
    assert!(e.files.iter().any(|f| f == "accuracy.png"), "{:?}", e.files);
    std::fs::remove_dir_all(&base).unwrap();
}

// ---------------------------------------------------------------- setup

#[test]
fn checkpoint_discovery_order_and_error() {
    let d = temp_dir("ckpt");
    for n in [
        "zeta",
        "adv-continuity",
        "adv",
        "alpha",
        "standard",
        "continuity",
    ] {
        std::fs::write(d.join(format!("{n}.safetensors")), b"").unwrap();
    }
    std::fs::write(d.join("notes.json"), b"{}").unwrap();
    let found: Vec<String> = session::checkpoints_in(&d)
        .iter()
        .map(|p| p.file_stem().unwrap().to_string_lossy().into_owned())
        .collect();
    assert_eq!(
        found,
        [
            "standard",
            "continuity",
            "adv",
            "adv-continuity",
            "alpha",
            "zeta"
        ]
    );
    let none = d.join("nothing-here");
    let err = session::default_checkpoints(&[none.clone(), d.join("also-missing")]).unwrap_err();
    let msg = err.to_string();
    assert!(msg.contains("--checkpoint"), "{msg}");
    assert!(msg.contains("nothing-here"), "{msg}");
    assert_eq!(
        session::default_checkpoints(&[none, d.clone()])
            .unwrap()
            .len(),
        6
    );
    assert_eq!(
        session::model_names(&[
            PathBuf::from("a/m.safetensors"),
            PathBuf::from("b/m.safetensors"),
            PathBuf::from("c/x.safetensors"),
        ]),
        ["m", "m#2", "x"]
    );
    std::fs::remove_dir_all(&d).unwrap();
    // the source checkout is always among the places looked at
    assert!(session::checkpoint_dirs()
        .iter()
        .any(|p| p.ends_with("checkpoints") && p.starts_with(env!("CARGO_MANIFEST_DIR"))));
}

fn fixture() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/models/resnet18_cifar.safetensors")
}

#[test]
fn default_dataset_follows_the_sidecar() {
    let dev = candle_core::Device::Cpu;
    let mut m = semcon::model::load(&fixture(), &Default::default(), &dev).unwrap();
    assert_eq!(
        session::default_dataset(std::slice::from_ref(&m)),
        "builtin:fashion-mnist"
    );
    m.sidecar.dataset = Some("builtin:fashion-mnist:colour".into());
    assert_eq!(
        session::default_dataset(std::slice::from_ref(&m)),
        "builtin:fashion-mnist:colour"
    );
}

// ------------------------------------------------- App + the real engine

#[test]
fn app_drives_the_engine() {
    use semcon::data::{self, DatasetSpec, LoadOptions};
    use semcon::engine::{Engine, Settings};
    let dev = candle_core::Device::Cpu;
    let m = semcon::model::load(&fixture(), &Default::default(), &dev).unwrap();
    let spec: DatasetSpec = "builtin:fashion-mnist".parse().unwrap();
    let set = data::load(&spec, &LoadOptions::default())
        .unwrap()
        .subset(24, 0);
    let set = semcon::eval::images_for(&m, &set).unwrap();
    let mut md = meta(&["fixture", "fixture#2"]);
    md.samples = set.len();
    md.pgd.truncate(1);
    let mut app = App::new(md);
    let settings = Settings {
        batch: 8,
        seed: 0,
        pgd: vec![semcon::metrics::pgd::PgdConfig::paper(2.0 / 255.0)],
    };
    let mut engine = Engine::start(vec![m.clone(), m], Arc::new(set), settings);
    let pump = |app: &mut App, until: &dyn Fn(&App) -> bool| {
        let deadline = Instant::now() + Duration::from_secs(120);
        while !until(app) {
            if let Some(r) = app.take_request() {
                engine.want(r);
            }
            match engine.events.recv_timeout(Duration::from_millis(100)) {
                Ok(ev) => {
                    app.on_event(ev);
                }
                Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {}
                Err(e) => panic!("engine gone: {e}"),
            }
            assert!(Instant::now() < deadline, "timed out");
        }
    };
    pump(&mut app, &|a| a.view_ready());
    assert!(app.clean(0).is_some() && app.clean(1).is_some());
    let (kind, level) = app.current();
    let a0 = app.perturb(0, kind, level).unwrap().accuracy;
    assert!((0.0..=1.0).contains(&a0));
    assert!(app.sample_images().is_some());
    // move on: the new level arrives under its own key
    app.update(Action::Right);
    pump(&mut app, &|a| a.view_ready());
    assert_eq!(app.level(), 2);
    assert!(app.perturb(1, kind, 2).is_some());
    // going back is instant: cached
    app.update(Action::Left);
    assert!(app.view_ready());
    let s = draw(&app, 160, 45);
    assert!(s.contains('%'));
    // k* of the selected perturbation and level, beside the clean one, with
    // accuracies; and of the PGD set.
    app.update(Action::CycleKstarSet);
    let shown = app.kstar_key(0);
    let clean_key = app.kstar_clean_key(0);
    pump(&mut app, &|a| {
        a.results.contains_key(&shown) && a.results.contains_key(&clean_key)
    });
    let r = app.kstar(0).unwrap();
    assert!(r.summary.all.accuracy.is_some());
    let acc = app.perturb(0, kind, 2).unwrap().accuracy;
    let n: usize = r.classes.iter().map(|c| c.n).sum();
    let right: f64 = r
        .classes
        .iter()
        .map(|c| c.n as f64 * c.accuracy.unwrap())
        .sum();
    assert!(
        (right / n as f64 - acc).abs() < 1e-9,
        "k* accuracy = the row's"
    );
    assert!(app.kstar_clean(0).is_some());
    // The class table splits each histogram into right and wrong samples.
    app.focus = Panel::Kstar;
    let screen = draw(&app, 200, 60);
    assert!(screen.contains("right · wrong"), "{screen}");
    app.update(Action::CycleKstarSet);
    let pgd_key = app.kstar_key(0);
    pump(&mut app, &|a| a.results.contains_key(&pgd_key));
    // The 2-D views of the same latents.
    for show in [KstarShow::Pca, KstarShow::Tsne] {
        app.update(Action::CycleKstarShow);
        assert_eq!(app.kstar_show, show);
        let key = app.embed_key(app.model).unwrap();
        pump(&mut app, &|a| a.results.contains_key(&key));
        let e = app.embedding(app.model).unwrap();
        assert_eq!(e.points.len(), app.meta.samples);
        app.focus = Panel::Kstar;
        let s = draw(&app, 200, 60);
        let name = if show == KstarShow::Pca {
            "PCA of layer"
        } else {
            "t-SNE of layer"
        };
        assert!(s.contains(name), "{s}");
        assert!(
            s.chars().any(|c| ('\u{2801}'..='\u{28ff}').contains(&c)),
            "braille dots: {s}"
        );
    }
    let dir = temp_dir("export_embed");
    let ex = export::export(&app, &dir).unwrap();
    assert!(
        ex.files.iter().any(|f| f == "embedding.png"),
        "{:?}",
        ex.files
    );
    app.update(Action::CycleKstarShow);
    assert_eq!(app.kstar_show, KstarShow::Classes);
    assert!(app.embed_key(0).is_none());
    engine.shutdown();
}

#[test]
fn number_formats() {
    assert_eq!(ui::num(0.0), "0.000");
    assert_eq!(ui::num(0.5), "0.500");
    assert_eq!(ui::num(3.216e-5), "3.2e-5");
    assert_eq!(ui::num(42.0), "42.00");
    assert_eq!(ui::num(250.0), "250.0");
    assert_eq!(ui::num(12000.0), "12000");
    assert_eq!(ui::num(f64::NAN), "-");
    assert_eq!(ui::pct(0.9), "90.0%");
    assert_eq!(semcon::tui::app::eps_label(8.0 / 255.0), "8/255");
    assert_eq!(semcon::tui::app::eps_label(0.01), "0.0100");
}

#[test]
fn models_with_different_class_counts_are_noted() {
    use clap::Parser;
    let d = temp_dir("classes12");
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/models/resnet18_cifar.safetensors");
    // The fixture with two more output classes.
    let mut t = candle_core::safetensors::load(&fixture, &candle_core::Device::Cpu).unwrap();
    let w = t["fc.weight"].clone();
    let b = t["fc.bias"].clone();
    t.insert(
        "fc.weight".into(),
        candle_core::Tensor::cat(&[&w, &w.narrow(0, 0, 2).unwrap()], 0).unwrap(),
    );
    t.insert(
        "fc.bias".into(),
        candle_core::Tensor::cat(&[&b, &b.narrow(0, 0, 2).unwrap()], 0).unwrap(),
    );
    let c12 = d.join("c12.safetensors");
    candle_core::safetensors::save(&t, &c12).unwrap();
    let args = |ck2: &Path| {
        let cli = semcon::cli::Cli::parse_from([
            "semcon",
            "explore",
            "-c",
            fixture.to_str().unwrap(),
            "-c",
            ck2.to_str().unwrap(),
            "-d",
            "builtin:fashion-mnist",
            "--samples",
            "8",
            "--device",
            "cpu",
        ]);
        match cli.command {
            Some(semcon::cli::Command::Explore(a)) => a.options().unwrap(),
            other => panic!("{other:?}"),
        }
    };
    let s = setup::load(&args(&c12)).unwrap();
    let note = s.note.unwrap_or_default();
    assert!(note.contains("different numbers of classes"), "{note}");
    assert!(note.contains("10") && note.contains("12"), "{note}");
    // Same class counts: no such note.
    let s = setup::load(&args(&fixture)).unwrap();
    assert!(!s.note.unwrap_or_default().contains("classes"));
}

/// Home/End/g/G and PgUp/PgDn move to the ends of, or 10 items through, the
/// focused panel's list, without wrapping.
#[test]
fn home_end_and_page_keys() {
    let mut app = App::new(meta(&["standard", "adv", "continuity"]));
    let press = |app: &mut App, c: KeyCode| {
        let a = keys::action(key(c)).expect("a mapped key");
        app.update(a);
    };
    let n_items = Kind::ALL.iter().map(|k| k.levels()).sum::<usize>();
    assert_eq!((app.kind(), app.level()), (Kind::ALL[0], 1));
    press(&mut app, KeyCode::End);
    assert_eq!((app.kind(), app.level()), (*Kind::ALL.last().unwrap(), 4));
    press(&mut app, KeyCode::PageDown);
    assert_eq!(
        app.kind(),
        *Kind::ALL.last().unwrap(),
        "no wrap past the end"
    );
    press(&mut app, KeyCode::Char('g'));
    assert_eq!((app.kind(), app.level()), (Kind::ALL[0], 1));
    press(&mut app, KeyCode::PageDown);
    // 10 items on: levels are listed kind by kind
    let mut seen = 0;
    let mut want = (Kind::ALL[0], 1);
    'find: for k in Kind::ALL {
        for l in 1..=k.levels() {
            if seen == 10.min(n_items - 1) {
                want = (k, l);
                break 'find;
            }
            seen += 1;
        }
    }
    assert_eq!((app.kind(), app.level()), want);
    press(&mut app, KeyCode::PageUp);
    assert_eq!((app.kind(), app.level()), (Kind::ALL[0], 1));
    // in the accuracy panel the same keys pick the first / last model
    app.focus = Panel::Accuracy;
    press(&mut app, KeyCode::Char('G'));
    assert_eq!(app.model, 2);
    press(&mut app, KeyCode::Home);
    assert_eq!(app.model, 0);
}

/// `b` switches the DS histogram between numpy's equal-width bins and
/// log-spaced ones (heavy-tailed DS), and says which it shows.
#[test]
fn b_switches_the_ds_histogram_to_log_bins() {
    let mut app = filled(&["standard", "continuity"]);
    // The title of the DS histogram (its long form says "log bins", the
    // short one "· log").
    let title = |s: &str| -> String {
        let line = s.lines().find(|l| l.contains("DS histogram")).unwrap();
        let t = &line[line.find("DS histogram").unwrap()..];
        t.split('│').next().unwrap().trim().to_string()
    };
    let before = title(&draw(&app, 160, 45));
    assert!(!before.contains("log"), "{before}");
    let a = keys::action(key(KeyCode::Char('b'))).expect("b is mapped");
    app.update(a);
    assert!(app.ds_log_bins);
    let after = title(&draw(&app, 160, 45));
    assert!(
        after.ends_with("· log") || after.contains("log bins"),
        "{after}"
    );
    app.update(a);
    assert!(!title(&draw(&app, 160, 45)).contains("log"));
}

/// `x` cycles the sample panel's explanations (none, saliency, IG,
/// GradCAM, LIME); every model's explanation of the shown sample is asked right
/// after the first numbers; a finished one is a heat map on one shared
/// scale (its hottest pixel the ramp's palest colour), a failed one says
/// why, one for another method is never shown; none are asked when off.
#[test]
fn explanations_cycle_and_show_as_heat_maps() {
    let mut app = filled(&["standard", "continuity"]);
    let has_explain = |app: &App| {
        app.wanted()
            .iter()
            .any(|k| matches!(k, JobKey::Explain { .. }))
    };
    assert!(!has_explain(&app), "no explanation is asked while off");
    assert_eq!(
        keys::action(key(KeyCode::Char('x'))),
        Some(Action::CycleExplain)
    );
    app.update(Action::CycleExplain);
    assert_eq!(app.explain, Some(Method::Saliency));
    let (kind, level) = app.current();
    let index = app.sample;
    let k = |model: usize| JobKey::Explain {
        model,
        method: Method::Saliency,
        kind,
        level,
        index,
        scored: false,
    };
    assert_eq!(
        app.tiers()[1],
        vec![k(0), k(1)],
        "after the first tier, selected model first"
    );
    let s = draw(&app, 160, 45);
    assert!(
        s.contains("saliency (x)") && s.contains("explaining…"),
        "{s}"
    );
    // a map with its hottest pixel at the top-left corner, for model 0
    let (h, w) = (28, 28);
    let mut map = vec![0.1f32; h * w];
    map[0] = 2.0;
    let ours = ExplainMap {
        method: Method::Saliency,
        height: h,
        width: w,
        map,
        target: 4,
        pred: 4,
        moved: 0.25,
        scores: None,
    };
    // under the wrong key (another method) it is refused
    let ig_key = JobKey::Explain {
        model: 0,
        method: Method::Ig,
        kind,
        level,
        index,
        scored: false,
    };
    assert!(!app.on_event(Event::Done {
        key: ig_key,
        result: Arc::new(JobResult::Explain(ours.clone())),
    }));
    assert!(app.explanation(0).is_none());
    done(&mut app, k(0), JobResult::Explain(ours));
    app.on_event(Event::Failed {
        key: k(1),
        error: "GradCAM needs a convolutional stage".into(),
    });
    let mut t = Terminal::new(TestBackend::new(160, 45)).unwrap();
    t.draw(|f| ui::render(f, &app)).unwrap();
    let buf = t.backend().buffer().clone();
    // the heat map's cells: find the brightest foreground of the panel
    let mut brightest = (0u32, 0u16, 0u16);
    for y in 0..45 {
        for x in 90..160 {
            if let ratatui::style::Color::Rgb(r, g, b) = buf[(x, y)].fg {
                let v = r as u32 + g as u32 + b as u32;
                if buf[(x, y)].symbol() == "▀" && v > brightest.0 {
                    brightest = (v, x, y);
                }
            }
        }
    }
    assert!(
        brightest.0 > 600,
        "no pale hot spot in the heat map: {brightest:?}"
    );
    let s = draw(&app, 160, 45);
    assert!(s.contains("cannot explain"), "{s}");
    assert!(s.contains("Δexpl 0.250 · sens_max …"), "{s}");
    snapshot("explain_compare", &s);
    // the numbers: a job of their own, after k*, shown under each model
    let ks = |model: usize| JobKey::Explain {
        model,
        method: Method::Saliency,
        kind,
        level,
        index,
        scored: true,
    };
    let tiers = app.tiers();
    let at = |key: &JobKey| tiers.iter().position(|t| t.contains(key)).unwrap();
    assert!(at(&ks(0)) > at(&app.kstar_key(0)), "{tiers:?}");
    assert_eq!(at(&ks(0)), at(&ks(1)));

    let scored = ExplainMap {
        scores: Some(semcon::engine::ExplainScores {
            sensitivity_max: 0.402,
            background_share: Some(0.35),
            deletion_auc: 0.38,
        }),
        ..app.explanation(0).unwrap().clone()
    };
    // a result with numbers under the key without them is refused
    assert!(!app.on_event(Event::Done {
        key: k(1),
        result: Arc::new(JobResult::Explain(scored.clone())),
    }));
    done(&mut app, ks(0), JobResult::Explain(scored));
    let s = draw(&app, 160, 45);
    assert!(
        s.contains("Δexpl 0.250 · sens_max 0.402 · bg 35% · del AUC 0.380"),
        "{s}"
    );
    // the export's sample.png: original, perturbed, then per model its
    // heat map (model 0: the hot corner) or the perturbed image (model 1)
    let dir = temp_dir("explain_export");
    let e = export::export(&app, &dir).unwrap();
    let img = image::open(e.dir.join("sample.png")).unwrap().to_rgb8();
    assert_eq!(
        (img.width(), img.height()),
        (12 + 4 * 172, 44 + 160 + 36 + 12)
    );
    let hot = img.get_pixel(12 + 2 * 172 + 2, 44 + 2);
    let cold = img.get_pixel(12 + 2 * 172 + 80, 44 + 80);
    assert!(
        hot[0] as u32 + hot[1] as u32 + hot[2] as u32 > 550,
        "model 0's hot corner: {hot:?}"
    );
    assert!(hot[1] > cold[1] + 80, "hot {hot:?} vs cold {cold:?}");
    let _ = std::fs::remove_dir_all(&dir);
    // cycling on: IG, GradCAM, then off again
    app.update(Action::CycleExplain);
    assert_eq!(app.explain, Some(Method::Ig));
    app.update(Action::CycleExplain);
    assert_eq!(app.explain, Some(Method::Gradcam));
    app.update(Action::CycleExplain);
    assert_eq!(app.explain, Some(Method::Lime));
    app.update(Action::CycleExplain);
    assert_eq!(app.explain, None);
    assert!(!has_explain(&app));
}

/// The sample panel's colours, as ratatui's `Buffer` debug output carries
/// them: the perturbed image and a model's heat map (viridis over the
/// image) in half blocks, in truecolor and in the 256-colour fallback;
/// without a graphics protocol every picture is half blocks.
#[test]
fn sample_panel_colours_snapshot() {
    let mut app = filled(&["standard"]);
    assert!(
        app.graphics.is_none(),
        "half blocks unless a terminal says otherwise"
    );
    app.update(Action::CycleExplain);
    let (kind, level) = app.current();
    let key = JobKey::Explain {
        model: 0,
        method: Method::Saliency,
        kind,
        level,
        index: app.sample,
        scored: false,
    };
    let (h, w) = (28, 28);
    let map = (0..h * w).map(|p| (p % w) as f32 / w as f32).collect();
    let e = ExplainMap {
        method: Method::Saliency,
        height: h,
        width: w,
        map,
        target: 4,
        pred: 4,
        moved: 0.5,
        scores: None,
    };
    done(&mut app, key, JobResult::Explain(e));
    for (mode, name) in [
        (ColorMode::TrueColor, "sample_colours_truecolor"),
        (ColorMode::Ansi256, "sample_colours_ansi256"),
    ] {
        app.meta.color = mode;
        let mut t = Terminal::new(TestBackend::new(36, 14)).unwrap();
        t.draw(|f| semcon::tui::panels::sample::render(f, &app, f.area()))
            .unwrap();
        let buf = t.backend().buffer();
        // the heat map's left column is viridis' dark purple end, its right
        // column the yellow end (over the image at 30%)
        if mode == ColorMode::TrueColor {
            let green = |x: u16| match buf[(x, 4)].fg {
                ratatui::style::Color::Rgb(_, g, _) => g as i32,
                c => panic!("{c:?}"),
            };
            // the heat map: the right half's picture cells on row 4
            let cols: Vec<u16> = (18..36).filter(|&x| buf[(x, 4)].symbol() == "▀").collect();
            let (l, r) = (cols[0], *cols.last().unwrap());
            assert!(r > l + 4, "{cols:?}");
            assert!(green(r) > green(l) + 100, "{} vs {}", green(r), green(l));
        }
        let got = format!("{buf:?}");
        snapshot(name, &got);
    }
}
