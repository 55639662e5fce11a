//! Drawing the chat: the message pane, a status bar, the input line. Reads the app, never
//! changes it. The input line has its own row, so incoming messages never touch what is
//! being typed; ratatui redraws only the cells that changed, and the whole screen after a
//! resize.

use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::Paragraph;
use unicode_width::UnicodeWidthChar as _;

use super::app::{App, Away, Link, Window};
use super::lines::{ChatLine, LineBody, MessageKind, with_nick};

/// Columns of `HH:MM `: continuation rows of a wrapped entry start there.
const INDENT: usize = 6;

/// Colours for senders, picked by a hash of `user@node` so that each keeps one.
const NICK_COLOURS: [Color; 12] = [
    Color::Red,
    Color::Green,
    Color::Yellow,
    Color::Blue,
    Color::Magenta,
    Color::Cyan,
    Color::LightRed,
    Color::LightGreen,
    Color::LightYellow,
    Color::LightBlue,
    Color::LightMagenta,
    Color::LightCyan,
];

/// The colour of a sender: FNV-1a of `user@node`, a fixed hash (the same on every run and
/// every machine, unlike std's seeded one).
pub fn nick_colour(from: &str) -> Color {
    let hash = from.bytes().fold(0x811c_9dc5_u32, |hash, byte| {
        (hash ^ u32::from(byte)).wrapping_mul(0x0100_0193)
    });
    NICK_COLOURS[hash as usize % NICK_COLOURS.len()]
}

/// The areas of the screen: messages, status bar, input line.
pub fn areas(screen: Rect) -> [Rect; 3] {
    Layout::vertical([
        Constraint::Min(1),
        Constraint::Length(1),
        Constraint::Length(1),
    ])
    .areas(screen)
}

/// Draws the whole chat.
pub fn draw(frame: &mut Frame<'_>, app: &App) {
    let [pane, status, input] = areas(frame.area());
    draw_pane(frame, app, pane);
    draw_status(frame, app, status);
    draw_input(frame, app, input);
}

fn draw_pane(frame: &mut Frame<'_>, app: &App, area: Rect) {
    let window = app.current();
    let (rows, _) = visible_rows(
        window,
        usize::from(area.width),
        usize::from(area.height),
        app.show_presence,
    );
    // Bottom-aligned: the newest entry sits just above the status bar.
    let top_padding = usize::from(area.height).saturating_sub(rows.len());
    let mut lines: Vec<Line<'static>> = vec![Line::default(); top_padding];
    lines.extend(rows);
    frame.render_widget(Paragraph::new(lines), area);
}

/// The rows of `window` that fit `height` rows of `width` columns, given its scroll, and
/// the largest scroll there is room for.
pub fn visible_rows(
    window: &Window,
    width: usize,
    height: usize,
    show_presence: bool,
) -> (Vec<Line<'static>>, usize) {
    let width = width.max(INDENT + 10);
    let wanted = height.saturating_add(window.scroll);
    let mut rows: Vec<Line<'static>> = Vec::new();
    let mut index = window.lines.len();
    while index > 0 && rows.len() < wanted {
        index -= 1;
        let line = &window.lines[index];
        let mut wrapped = Vec::new();
        if show_presence || !matches!(line.body, LineBody::Presence(_)) {
            wrapped = wrap(spans_of(line), width);
        }
        if window.marker == Some(index) {
            wrapped.insert(0, marker_row(width));
        }
        // Prepended: `rows` is built newest first, reversed at the end.
        rows.extend(wrapped.into_iter().rev());
    }
    let exhausted = index == 0;
    rows.reverse();
    let total = rows.len();
    let max_scroll = if exhausted {
        total.saturating_sub(height)
    } else {
        window.scroll
    };
    let scroll = window.scroll.min(max_scroll);
    let end = total - scroll;
    let start = end.saturating_sub(height);
    (rows[start..end].to_vec(), max_scroll)
}

fn marker_row(width: usize) -> Line<'static> {
    let label = " unread ";
    let side = width.saturating_sub(label.len()) / 2;
    let text = format!(
        "{}{label}{}",
        "-".repeat(side),
        "-".repeat(width.saturating_sub(side + label.len()))
    );
    Line::from(Span::styled(text, Style::default().fg(Color::Red)))
}

/// The styled pieces of one entry, on one logical line.
fn spans_of(line: &ChatLine) -> Vec<Span<'static>> {
    let dim = Style::default().fg(Color::DarkGray);
    let mut spans = vec![Span::styled(format!("{} ", line.time), dim)];
    match &line.body {
        LineBody::Message(m) => {
            let colour = Style::default().fg(nick_colour(&m.from));
            let who = with_nick(&m.from, m.nick.as_deref());
            let text_style = if m.mention {
                Style::default().add_modifier(Modifier::BOLD | Modifier::REVERSED)
            } else {
                Style::default()
            };
            match &m.kind {
                MessageKind::Said => {
                    spans.push(Span::styled(who, colour.add_modifier(Modifier::BOLD)));
                    spans.push(Span::raw(": "));
                    spans.push(Span::styled(m.text.clone(), text_style));
                }
                MessageKind::Action => {
                    spans.push(Span::styled("* ".to_owned(), colour));
                    spans.push(Span::styled(who, colour.add_modifier(Modifier::BOLD)));
                    spans.push(Span::raw(" "));
                    spans.push(Span::styled(
                        m.text.clone(),
                        text_style.add_modifier(Modifier::ITALIC),
                    ));
                }
                MessageKind::Direct { to } => {
                    spans.push(Span::styled(
                        "[DM] ".to_owned(),
                        Style::default()
                            .fg(Color::Magenta)
                            .add_modifier(Modifier::BOLD),
                    ));
                    spans.push(Span::styled(who, colour.add_modifier(Modifier::BOLD)));
                    spans.push(Span::raw(" -> "));
                    spans.push(Span::styled(
                        to.clone(),
                        Style::default().fg(nick_colour(to)),
                    ));
                    spans.push(Span::raw(": "));
                    spans.push(Span::styled(m.text.clone(), text_style));
                }
            }
        }
        LineBody::Presence(text) => spans.push(Span::styled(format!("-- {text}"), dim)),
        LineBody::Info(text) => spans.push(Span::styled(
            format!("-- {text}"),
            Style::default().fg(Color::Cyan),
        )),
        LineBody::Error(text) => spans.push(Span::styled(
            format!("!! {text}"),
            Style::default().fg(Color::Red),
        )),
    }
    spans
}

/// Breaks `spans` into rows of at most `width` columns, at a space when there is one in
/// the row, else anywhere; rows after the first start at [`INDENT`].
fn wrap(spans: Vec<Span<'static>>, width: usize) -> Vec<Line<'static>> {
    let cells: Vec<(char, Style)> = spans
        .iter()
        .flat_map(|span| span.content.chars().map(move |c| (c, span.style)))
        .collect();
    let mut rows: Vec<Vec<(char, Style)>> = vec![Vec::new()];
    let mut used = 0;
    let mut i = 0;
    while i < cells.len() {
        let (c, style) = cells[i];
        let w = c.width().unwrap_or(0);
        if used + w > width {
            let row = rows.last_mut().map(std::mem::take).unwrap_or_default();
            // Break after the last space of the row, when it is past the indent.
            let split = row
                .iter()
                .rposition(|(c, _)| *c == ' ')
                .filter(|&at| at >= INDENT && at + 1 < row.len());
            let (head, tail) = match split {
                Some(at) => (row[..=at].to_vec(), row[at + 1..].to_vec()),
                None => (row, Vec::new()),
            };
            if let Some(last) = rows.last_mut() {
                *last = head;
            }
            let mut next: Vec<(char, Style)> = vec![(' ', Style::default()); INDENT];
            next.extend(tail);
            used = next.iter().map(|(c, _)| c.width().unwrap_or(0)).sum();
            rows.push(next);
            continue;
        }
        if let Some(row) = rows.last_mut() {
            row.push((c, style));
        }
        used += w;
        i += 1;
    }
    rows.into_iter().map(row_line).collect()
}

/// A row of styled characters, as spans of equal style.
fn row_line(row: Vec<(char, Style)>) -> Line<'static> {
    let mut spans: Vec<Span<'static>> = Vec::new();
    let mut text = String::new();
    let mut current: Option<Style> = None;
    for (c, style) in row {
        if current != Some(style) {
            if let Some(style) = current
                && !text.is_empty()
            {
                spans.push(Span::styled(std::mem::take(&mut text), style));
            }
            current = Some(style);
        }
        text.push(c);
    }
    if let Some(style) = current
        && !text.is_empty()
    {
        spans.push(Span::styled(text, style));
    }
    Line::from(spans)
}

fn draw_status(frame: &mut Frame<'_>, app: &App, area: Rect) {
    let bar = Style::default().bg(Color::Blue).fg(Color::White);
    let mut right = with_nick(&app.me.from(), app.me.nick.as_deref());
    if let Away::Away { .. } = app.away {
        right.push_str(" [away]");
    }
    match &app.link {
        Link::Up => {}
        Link::Reconnecting => right.push_str(" | reconnecting…"),
        Link::Down(_) => right.push_str(" | stream stopped"),
    }
    if !app.show_presence {
        right.push_str(" | presence hidden");
    }
    right.push(' ');
    let right_width = u16::try_from(right.chars().count())
        .unwrap_or(u16::MAX)
        .min(area.width / 2);
    let [left_area, right_area] =
        Layout::horizontal([Constraint::Min(0), Constraint::Length(right_width)]).areas(area);
    let mut spans = Vec::new();
    for (index, window) in app.windows.iter().enumerate() {
        let mut text = format!(" {}:{}", index + 1, window.target.label());
        if window.unread > 0 {
            text.push_str(&format!("({})", window.unread));
        }
        let style = if index == app.active {
            bar.add_modifier(Modifier::BOLD | Modifier::UNDERLINED)
        } else if window.highlight {
            bar.fg(Color::LightMagenta).add_modifier(Modifier::BOLD)
        } else if window.unread > 0 {
            bar.fg(Color::LightYellow)
        } else {
            bar
        };
        spans.push(Span::styled(text, style));
    }
    frame.render_widget(Paragraph::new(Line::from(spans)).style(bar), left_area);
    frame.render_widget(
        Paragraph::new(right)
            .style(bar)
            .alignment(ratatui::layout::Alignment::Right),
        right_area,
    );
}

fn draw_input(frame: &mut Frame<'_>, app: &App, area: Rect) {
    let prompt = format!("{}> ", app.current().target.label());
    let prompt_width = u16::try_from(prompt.chars().count())
        .unwrap_or(u16::MAX)
        .min(area.width / 3);
    let [prompt_area, text_area] =
        Layout::horizontal([Constraint::Length(prompt_width), Constraint::Min(1)]).areas(area);
    frame.render_widget(
        Paragraph::new(prompt).style(Style::default().add_modifier(Modifier::BOLD)),
        prompt_area,
    );
    // Keep one column for the cursor at the end of the line.
    let width = usize::from(text_area.width.max(1) - 1);
    let scroll = app.input.visual_scroll(width);
    frame.render_widget(
        Paragraph::new(app.input.value()).scroll((0, u16::try_from(scroll).unwrap_or(0))),
        text_area,
    );
    let cursor = app.input.visual_cursor().saturating_sub(scroll);
    frame.set_cursor_position((
        text_area.x + u16::try_from(cursor).unwrap_or(0),
        text_area.y,
    ));
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(line: &Line<'_>) -> String {
        line.spans.iter().map(|s| s.content.as_ref()).collect()
    }

    #[test]
    fn long_lines_wrap_at_spaces_with_an_indent() {
        let spans = vec![Span::raw("12:00 alice@h1: one two three four five six")];
        let rows: Vec<String> = wrap(spans, 24).iter().map(text).collect();
        assert_eq!(
            rows,
            [
                "12:00 alice@h1: one two ",
                "      three four five ",
                "      six"
            ]
        );
        let rows: Vec<String> = wrap(vec![Span::raw("12:00 ".to_owned() + &"x".repeat(30))], 20)
            .iter()
            .map(text)
            .collect();
        assert_eq!(rows.len(), 3);
        assert!(rows.iter().all(|r| r.chars().count() <= 20), "{rows:?}");
    }

    #[test]
    fn wide_characters_count_double() {
        let rows = wrap(vec![Span::raw("12:00 日本語日本語日本語")], 12);
        assert!(rows.iter().all(|r| r.width() <= 12), "{rows:?}");
    }

    #[test]
    fn a_sender_keeps_its_colour() {
        assert_eq!(nick_colour("alice@h1"), nick_colour("alice@h1"));
        let distinct: std::collections::BTreeSet<String> =
            ["alice@h1", "bob@h2", "carol@h3", "dave@h4"]
                .iter()
                .map(|from| format!("{:?}", nick_colour(from)))
                .collect();
        assert!(distinct.len() > 1);
    }
}
