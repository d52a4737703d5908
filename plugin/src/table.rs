//! Aligned columns, as kubectl prints them, fitted to the terminal by shortening the
//! last column (a message) rather than wrapping every row.

pub fn table(headers: &[&str], rows: &[Vec<String>], width: usize) -> String {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.len()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: Vec<&str>| {
        let mut out = String::new();
        let last = cells.len().saturating_sub(1);
        for (i, cell) in cells.into_iter().enumerate() {
            if i == last {
                let room = width.saturating_sub(out.chars().count()).max(10);
                out.push_str(&shorten(cell, room));
            } else {
                out.push_str(&format!("{cell:<w$}   ", w = widths[i]));
            }
        }
        out.trim_end().to_string() + "\n"
    };
    let mut out = line(headers.to_vec());
    for row in rows {
        out.push_str(&line(row.iter().map(String::as_str).collect()));
    }
    out
}

fn shorten(text: &str, room: usize) -> String {
    let text = text.replace('\n', " ");
    if text.chars().count() <= room {
        return text;
    }
    let kept: String = text.chars().take(room.saturating_sub(1)).collect();
    format!("{kept}…")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_align_and_the_last_fits_the_width() {
        let rows = vec![
            vec!["0".to_string(), "web-0".to_string(), "short".to_string()],
            vec!["10".to_string(), "web-10".to_string(), "a message far too long for the terminal".to_string()],
        ];
        let out = table(&["ORDINAL", "POD", "MESSAGE"], &rows, 40);
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines[0], "ORDINAL   POD      MESSAGE");
        assert_eq!(lines[1], "0         web-0    short");
        assert!(lines[2].starts_with("10        web-10   a message"), "{out}");
        assert!(lines[2].chars().count() <= 40 && lines[2].ends_with('…'), "{out}");
    }
}
