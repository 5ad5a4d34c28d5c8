"""What a student does in JupyterLab's interface, for the browser tests (Playwright pages)."""

from __future__ import annotations

import re
import time

MENU_WAIT = 30.0  # s a menu item may stay greyed out


def menu(page, top: str, item: str) -> None:
    """Click `item` in the menu bar's `top` menu, as a student does; a menu opened while its item was
    greyed out (JupyterLab decides that when the menu opens) is closed and opened again."""
    label = page.locator(".lm-Menu-itemLabel", has_text=re.compile(rf"^{re.escape(item)}$"))
    entry = page.locator(".lm-Menu-item", has=label)
    deadline = time.monotonic() + MENU_WAIT
    while True:
        page.locator(".lm-MenuBar-item", has_text=re.compile(rf"^{re.escape(top)}$")).click()
        entry.wait_for()
        if "lm-mod-disabled" not in (entry.get_attribute("class") or ""):
            entry.click()
            return
        assert time.monotonic() < deadline, f"{top} > {item} stayed greyed out"
        page.keyboard.press("Escape")
        page.wait_for_timeout(200)
