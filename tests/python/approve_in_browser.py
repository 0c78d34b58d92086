"""A person approving a call on `toolwarden approvals serve`'s page, in a
real browser: Debian's headless Chromium, driven by Selenium.

usage: approve_in_browser.py URL SCREENSHOT

Opens URL (the page's first line), waits until the page's script says it
refreshes the list, and prints "ready". Then waits for a call to show up
without reloading (the caller files one meanwhile), saves a screenshot of
the page to SCREENSHOT, types a reason and waits for the list to
refresh, clicks the call's Approve button, and prints one JSON object:
the call's text as shown, the reason as it stands after the refreshes,
what the page said after the click, and the browser's console errors
(a Content-Security-Policy violation would be one).
"""

import json
import sys
import time

from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions as seen
from selenium.webdriver.support.ui import WebDriverWait

PATIENCE = 60


def browser():
    options = webdriver.ChromeOptions()
    options.binary_location = "/usr/bin/chromium"
    options.add_argument("--headless=new")
    # Chromium's sandbox does not start as root (CI containers).
    options.add_argument("--no-sandbox")
    options.add_argument("--disable-dev-shm-usage")
    options.add_argument("--window-size=1000,720")
    options.add_argument("--force-device-scale-factor=1")
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    return webdriver.Chrome(options=options, service=Service("/usr/bin/chromedriver"))


def main(url, screenshot):
    driver = browser()
    try:
        run(driver, url, screenshot)
    except Exception:
        # What the browser showed, for the failing test's output.
        print(driver.current_url, driver.page_source, file=sys.stderr)
        raise
    finally:
        driver.quit()


def run(driver, url, screenshot):
    if True:
        wait = WebDriverWait(driver, PATIENCE)
        driver.get(url)
        wait.until(seen.text_to_be_present_in_element((By.ID, "live"), "as they are filed"))
        driver.find_element(By.ID, "none")
        print("ready", flush=True)

        call = wait.until(seen.presence_of_element_located((By.CSS_SELECTOR, "#calls article")))
        shown = call.text
        driver.save_screenshot(screenshot)
        # A reason being typed outlives the list's refreshes.
        reason = call.find_element(By.NAME, "reason")
        reason.send_keys("typed while the list refreshes")
        time.sleep(2.5)
        kept = reason.get_attribute("value")
        call.find_element(By.CSS_SELECTOR, "button.approve").click()
        said = wait.until(seen.presence_of_element_located((By.CSS_SELECTOR, ".said"))).text
        errors = [
            entry["message"]
            for entry in driver.get_log("browser")
            if entry["level"] == "SEVERE"
        ]
        print(json.dumps({"shown": shown, "kept": kept, "said": said, "errors": errors}), flush=True)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
