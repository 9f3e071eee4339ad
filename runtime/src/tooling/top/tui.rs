//! The live view of `gleaner top` in a terminal (ratatui): the pipelines
//! and plugins tables, sampled every interval; `s` sorts the pipelines by
//! the next column, `r` reverses, `q`, Esc or Ctrl-C quits. An agent that
//! stops answering is shown as such and asked again; the terminal is
//! restored on the way out.
//!
//! Draws what `View` computes; reads nothing else.

use std::time::{Duration, Instant};

use ratatui::crossterm::event::{self, Event, KeyCode, KeyEventKind, KeyModifiers};
use ratatui::layout::{Constraint, Layout};
use ratatui::style::{Style, Stylize};
use ratatui::text::Line;
use ratatui::widgets::{Block, Cell, Paragraph, Row, Table};

use super::{PIPELINE_COLUMNS, PLUGIN_COLUMNS, Sample, View, fetch};
use crate::tooling::api_client::ApiClient;

/// What the keys chose.
struct Keys {
    /// The column the pipelines are sorted by (0: name).
    sort: usize,
    reverse: bool,
}

/// Runs the live view until a quit key.
pub(super) fn run(api: &ApiClient, interval: Duration, first: Sample) -> std::io::Result<()> {
    let mut terminal = ratatui::try_init()?;
    let result = (|| -> std::io::Result<()> {
        let mut keys = Keys {
            sort: 1,
            reverse: true,
        };
        let (mut before, mut at) = (first, Instant::now());
        let mut shown: Option<View> = None;
        let mut error: Option<String> = None;
        let mut next = Instant::now() + interval;
        loop {
            terminal.draw(|frame| draw(frame, shown.as_ref(), error.as_deref(), &keys))?;
            let wait = next.saturating_duration_since(Instant::now());
            if event::poll(wait)? {
                if let Event::Key(k) = event::read()?
                    && k.kind == KeyEventKind::Press
                {
                    match k.code {
                        KeyCode::Char('q') | KeyCode::Esc => return Ok(()),
                        KeyCode::Char('c') if k.modifiers.contains(KeyModifiers::CONTROL) => {
                            return Ok(());
                        }
                        KeyCode::Char('s') => keys.sort = (keys.sort + 1) % PIPELINE_COLUMNS.len(),
                        KeyCode::Char('r') => keys.reverse = !keys.reverse,
                        _ => {}
                    }
                }
                continue;
            }
            next = Instant::now() + interval;
            match fetch(api) {
                Ok(after) => {
                    shown = Some(View::of(&before, &after, at.elapsed().as_secs_f64()));
                    error = None;
                    (before, at) = (after, Instant::now());
                }
                Err(e) => error = Some(format!("{e}; asking again every {interval:?}")),
            }
        }
    })();
    ratatui::try_restore()?;
    result
}

fn draw(frame: &mut ratatui::Frame, view: Option<&View>, error: Option<&str>, keys: &Keys) {
    let [title, pipelines, plugins, help] = Layout::vertical([
        Constraint::Length(1),
        Constraint::Fill(1),
        Constraint::Fill(1),
        Constraint::Length(1),
    ])
    .areas(frame.area());
    let head = match (error, view) {
        (Some(e), _) => Line::from(e.to_owned()).red().bold(),
        (None, Some(v)) => Line::from(v.title()).bold(),
        (None, None) => Line::from("gleaner top: first sample…"),
    };
    frame.render_widget(Paragraph::new(head), title);
    let Some(view) = view else { return };
    let mut rows = view.pipelines.clone();
    rows.sort_by(|a, b| {
        let o = match keys.sort {
            0 => a.name.cmp(&b.name),
            n => a.values[n - 1].total_cmp(&b.values[n - 1]),
        };
        if keys.reverse { o.reverse() } else { o }
    });
    // `left`: how many columns are names (left-aligned), not figures.
    let header = |names: &[&'static str], left: usize, sorted: Option<usize>| {
        Row::new(names.iter().enumerate().map(|(i, n)| {
            let mut cell = Line::from(*n);
            if i >= left {
                cell = cell.right_aligned();
            }
            if Some(i) == sorted {
                cell = cell.underlined();
            }
            Cell::from(cell)
        }))
        .style(Style::new().bold())
    };
    let cells = |c: Vec<String>, names: usize| {
        Row::new(c.into_iter().enumerate().map(|(i, s)| {
            let line = Line::from(s);
            Cell::from(if i >= names {
                line.right_aligned()
            } else {
                line
            })
        }))
    };
    let widths = |first: &[u16], n: usize| -> Vec<Constraint> {
        first
            .iter()
            .map(|w| Constraint::Length(*w))
            .chain(std::iter::repeat_n(Constraint::Length(9), n))
            .collect()
    };
    let table = Table::new(
        rows.iter().map(|r| cells(View::pipeline_cells(r), 1)),
        widths(&[24], PIPELINE_COLUMNS.len() - 1),
    )
    .header(header(&PIPELINE_COLUMNS, 1, Some(keys.sort)))
    .block(Block::bordered().title(" Pipelines "));
    frame.render_widget(table, pipelines);
    let table = Table::new(
        view.plugins.iter().map(|r| cells(View::plugin_cells(r), 3)),
        widths(&[24, 11, 28], PLUGIN_COLUMNS.len() - 3),
    )
    .header(header(&PLUGIN_COLUMNS, 3, None))
    .block(Block::bordered().title(" Plugins "));
    frame.render_widget(table, plugins);
    frame.render_widget(
        Paragraph::new(Line::from(
            "s: sort by the next column   r: reverse   q: quit",
        ))
        .dark_gray(),
        help,
    );
}

#[cfg(test)]
mod tests {
    use ratatui::Terminal;
    use ratatui::backend::TestBackend;

    use super::*;
    use crate::tooling::top::{PipelineRow, PluginRow};

    fn screen(view: &View, keys: &Keys) -> Vec<String> {
        let mut t = Terminal::new(TestBackend::new(130, 14)).unwrap();
        t.draw(|f| draw(f, Some(view), None, keys)).unwrap();
        let buf = t.backend().buffer().clone();
        (0..buf.area.height)
            .map(|y| {
                (0..buf.area.width)
                    .map(|x| buf[(x, y)].symbol().to_owned())
                    .collect::<String>()
                    .trim_end()
                    .to_owned()
            })
            .collect()
    }

    #[test]
    fn the_live_view_shows_both_tables_sorted_by_the_chosen_column() {
        let row = |name: &str, rate: f64| PipelineRow {
            name: name.into(),
            values: [rate, rate, 0.0, 5000.0, 4990.0, 1.0, 0.0, 0.0, 2.0, 0.0],
        };
        let view = View {
            rss: 23_900_000.0,
            secs: 2.0,
            pipelines: vec![row("slow", 10.0), row("busy", 2500.0)],
            plugins: vec![PluginRow {
                names: ["busy".into(), "flusher0".into(), "builtin:file".into()],
                values: [5.0, 2500.0, 0.0, 0.0, 1_300_000.0],
            }],
        };
        let keys = Keys {
            sort: 1,
            reverse: true,
        };
        let lines = screen(&view, &keys);
        let text = lines.join("\n");
        assert_eq!(
            lines[0],
            "gleaner top: 2 pipelines, agent RSS 23.9MB, rates over 2.0 s"
        );
        assert!(lines[1].contains(" Pipelines "), "{text}");
        let at = |name: &str| lines.iter().position(|l| l.contains(name)).unwrap();
        assert!(at("busy ") < at("slow "), "busiest first: {text}");
        let busy: Vec<&str> = lines[at("busy ")].split_whitespace().collect();
        assert_eq!(busy[0], "│busy", "{text}");
        assert_eq!(
            busy[1..],
            [
                "2.5k", "2.5k", "0", "5.0k", "5.0k", "1", "0", "0", "2", "0", "│"
            ]
        );
        assert!(text.contains(" Plugins "), "{text}");
        assert!(
            text.contains(
                "│PIPELINE                 STAGE       PLUGIN                         CALLS/s"
            ),
            "{text}"
        );
        assert!(
            text.lines().any(|l| l.contains("flusher0")
                && l.contains("builtin:file")
                && l.contains("1.3MB")),
            "{text}"
        );
        assert!(lines[13].contains("s: sort"), "{text}");
        // By name, a to z and back.
        let busy_first = |reverse| {
            let lines = screen(&view, &Keys { sort: 0, reverse });
            let at = |name: &str| lines.iter().position(|l| l.contains(name));
            at("busy ") < at("slow ")
        };
        assert!(busy_first(false));
        assert!(!busy_first(true));
    }
}
