//! Keys -> actions. The map is listed once ([`KEYS`]) for the footer and the
//! help overlay; [`action`] implements it.

use crossterm::event::{KeyCode, KeyEvent, KeyEventKind, KeyModifiers};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    Quit,
    /// Esc: closes the help, else quits.
    Back,
    Help,
    Up,
    Down,
    /// Home/End, PgUp/PgDn: the first/last item, or 10 items up/down, of the
    /// focused panel's list.
    Jump(Jump),
    Left,
    Right,
    NextPanel,
    PrevPanel,
    NextModel,
    PrevModel,
    NextSample,
    PrevSample,
    NextLayer,
    PrevLayer,
    NextMetric,
    PrevMetric,
    /// Jump to a level of the current perturbation.
    Level(usize),
    Export,
    ToggleDemo,
    /// The DS histogram's bins: equal-width (numpy's) or log-spaced.
    ToggleLogBins,
    /// The set whose k* is shown: clean, the selected perturbation and
    /// level, each PGD setting.
    CycleKstarSet,
    /// Below the k* counts: the classes, a PCA view, a t-SNE view.
    CycleKstarShow,
    /// The sample panel's explanations: none, saliency, IG, GradCAM, LIME.
    CycleExplain,
}

/// Where [`Action::Jump`] goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Jump {
    First,
    Last,
    PageUp,
    PageDown,
}

/// (keys, what they do) for the help overlay.
pub const KEYS: &[(&str, &str)] = &[
    (
        "↑ ↓  k j",
        "move in the focused panel (item, model, class, sample)",
    ),
    ("Home End  g G", "first / last item of the focused panel"),
    ("PgUp PgDn", "10 items up / down"),
    ("← →  h l", "level down/up (k* panel: layer)"),
    ("1-4", "jump to a level of the current perturbation"),
    ("Tab  S-Tab", "next / previous panel"),
    ("m  M", "next / previous model (compare mode)"),
    ("n  p", "next / previous sample"),
    ("t  T", "k*: next / previous layer"),
    ("d  D", "k*: next / previous distance"),
    ("v", "k* of: clean / selected perturbation / each PGD"),
    ("s", "k* panel: classes / PCA / t-SNE of the same latents"),
    ("b", "DS histogram: equal-width / log-spaced bins"),
    (
        "x",
        "sample: each model's explanation: none / saliency / IG / GradCAM / LIME",
    ),
    ("e", "export the current view (JSON + PNG charts)"),
    ("space", "demo: pause / resume (starts it when off)"),
    ("?", "this help"),
    ("q  Esc  Ctrl-C", "quit"),
];

/// The one-line footer.
pub const FOOTER: &str = "↑↓←→/hjkl move · Tab panel · m model · n/p sample · t layer · d distance · e export · space demo · ? help · q quit";
/// The footer for narrow terminals (fits 80 columns).
pub const FOOTER_SHORT: &str =
    "hjkl move  Tab panel  m model  n/p sample  t/d k*  e export  ? help  q quit";

/// The action of a key press, if any (releases and unknown keys give none).
pub fn action(k: KeyEvent) -> Option<Action> {
    if k.kind == KeyEventKind::Release {
        return None;
    }
    let ctrl = k.modifiers.contains(KeyModifiers::CONTROL);
    Some(match k.code {
        KeyCode::Char('c') | KeyCode::Char('C') if ctrl => Action::Quit,
        _ if ctrl => return None,
        KeyCode::Char('q') | KeyCode::Char('Q') => Action::Quit,
        KeyCode::Esc => Action::Back,
        KeyCode::Char('?') | KeyCode::F(1) => Action::Help,
        KeyCode::Up | KeyCode::Char('k') => Action::Up,
        KeyCode::Down | KeyCode::Char('j') => Action::Down,
        KeyCode::Home | KeyCode::Char('g') => Action::Jump(Jump::First),
        KeyCode::End | KeyCode::Char('G') => Action::Jump(Jump::Last),
        KeyCode::PageUp => Action::Jump(Jump::PageUp),
        KeyCode::PageDown => Action::Jump(Jump::PageDown),
        KeyCode::Left | KeyCode::Char('h') => Action::Left,
        KeyCode::Right | KeyCode::Char('l') => Action::Right,
        KeyCode::Tab => Action::NextPanel,
        KeyCode::BackTab => Action::PrevPanel,
        KeyCode::Char('m') => Action::NextModel,
        KeyCode::Char('M') => Action::PrevModel,
        KeyCode::Char('n') => Action::NextSample,
        KeyCode::Char('p') => Action::PrevSample,
        KeyCode::Char('t') => Action::NextLayer,
        KeyCode::Char('T') => Action::PrevLayer,
        KeyCode::Char('d') => Action::NextMetric,
        KeyCode::Char('D') => Action::PrevMetric,
        KeyCode::Char(c @ '1'..='9') => Action::Level(c as usize - '0' as usize),
        KeyCode::Char('e') => Action::Export,
        KeyCode::Char('b') => Action::ToggleLogBins,
        KeyCode::Char('v') => Action::CycleKstarSet,
        KeyCode::Char('s') => Action::CycleKstarShow,
        KeyCode::Char('x') => Action::CycleExplain,
        KeyCode::Char(' ') => Action::ToggleDemo,
        _ => return None,
    })
}
