"""The two small HTML pages of password login: registration (with an invitation) and login.

Self-contained (inline CSS, no scripts, no external assets); every value is HTML-escaped.
"""

from __future__ import annotations

from html import escape

_STYLE = """
:root { color-scheme: light dark; --fg: #1f2328; --bg: #f6f8fa; --card: #fff;
  --line: #d0d7de; --accent: #0969da; --bad: #cf222e; --good: #1a7f37; }
@media (prefers-color-scheme: dark) { :root { --fg: #e6edf3; --bg: #0d1117;
  --card: #161b22; --line: #30363d; --accent: #4493f8; --bad: #f85149; --good: #3fb950; } }
* { box-sizing: border-box; }
body { margin: 0; min-height: 100vh; display: grid; place-items: center; background: var(--bg);
  color: var(--fg); font: 15px/1.5 system-ui, -apple-system, "Segoe UI", sans-serif; }
main { width: min(24rem, 92vw); background: var(--card); border: 1px solid var(--line);
  border-radius: 10px; padding: 1.75rem; }
h1 { font-size: 1.3rem; margin: 0 0 .25rem; }
p.sub { margin: 0 0 1.25rem; opacity: .75; font-size: .9rem; }
label { display: block; font-weight: 600; margin: .9rem 0 .3rem; font-size: .9rem; }
input { width: 100%; padding: .5rem .6rem; border: 1px solid var(--line); border-radius: 6px;
  background: transparent; color: inherit; font: inherit; }
button { margin-top: 1.25rem; width: 100%; padding: .6rem; border: 0; border-radius: 6px;
  background: var(--accent); color: #fff; font: inherit; font-weight: 600; cursor: pointer; }
.msg { padding: .6rem .75rem; border-radius: 6px; margin-bottom: 1rem; font-size: .9rem;
  border: 1px solid currentColor; }
.bad { color: var(--bad); } .good { color: var(--good); }
small { display: block; margin-top: .3rem; opacity: .7; }
a { color: var(--accent); }
"""


def _page(title: str, body: str) -> str:
    return (
        "<!DOCTYPE html>\n<html lang='en'><head><meta charset='utf-8'>"
        "<meta name='viewport' content='width=device-width, initial-scale=1'>"
        f"<title>{escape(title)}</title><style>{_STYLE}</style></head>"
        f"<body><main>{body}</main></body></html>"
    )


def _message(text: str | None, good: bool = False) -> str:
    if not text:
        return ""
    return f"<div class='msg {'good' if good else 'bad'}' role='alert'>{escape(text)}</div>"


def register_page(
    action: str,
    xsrf_html: str,
    token: str,
    *,
    username: str = "",
    error: str | None = None,
) -> str:
    """The registration form (``token`` prefilled from the invitation link)."""
    token_field = (
        f"<input type='hidden' name='token' value='{escape(token)}'>"
        if token
        else "<label for='token'>Invitation code</label>"
        "<input id='token' name='token' required autocomplete='off'>"
    )
    body = (
        "<h1>Join the cluster</h1>"
        "<p class='sub'>Create your account with the invitation you were sent.</p>"
        f"{_message(error)}"
        f"<form method='post' action='{escape(action)}'>{xsrf_html}{token_field}"
        "<label for='username'>User name</label>"
        f"<input id='username' name='username' value='{escape(username)}' required "
        "pattern='[a-z][a-z0-9._\\-]{0,63}' autocomplete='username' autofocus>"
        "<small>lower-case letters, digits, '.', '_', '-'</small>"
        "<label for='password'>Password</label>"
        "<input id='password' name='password' type='password' minlength='10' required "
        "autocomplete='new-password'><small>at least 10 characters</small>"
        "<label for='password2'>Password again</label>"
        "<input id='password2' name='password2' type='password' minlength='10' required "
        "autocomplete='new-password'>"
        "<button type='submit'>Create account</button></form>"
    )
    return _page("Join the cluster", body)


def registered_page(username: str, role: str, login_url: str) -> str:
    """After a successful registration."""
    body = (
        "<h1>Welcome</h1>"
        + _message(f"The account {username} ({role}) was created.", good=True)
        + f"<p><a href='{escape(login_url)}'>Log in</a> with your user name and password.</p>"
    )
    return _page("Account created", body)


def login_page(action: str, xsrf_html: str, *, error: str | None = None) -> str:
    """The login form (``action`` carries ``?next=``): members with user name and password;
    the host's owner with the server token (or the server's password) and no user name."""
    body = (
        "<h1>Log in</h1><p class='sub'>kohakuriver-lab cluster host</p>"
        f"{_message(error)}"
        f"<form method='post' action='{escape(action)}'>{xsrf_html}"
        "<label for='username'>User name</label>"
        "<input id='username' name='username' autocomplete='username' autofocus>"
        "<label for='password'>Password</label>"
        "<input id='password' name='password' type='password' required "
        "autocomplete='current-password'>"
        "<small>The host's owner: leave the user name empty and enter the server's token or "
        "password.</small>"
        "<button type='submit'>Log in</button></form>"
    )
    return _page("Log in", body)
