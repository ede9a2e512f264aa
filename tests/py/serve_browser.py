"""`idiff serve`'s web page in a real browser (CTest serve.browser).

Trains a tiny model for two steps on Fashion-MNIST, starts `idiff serve` on a free
loopback port, opens the page in headless Chromium (Debian's chromium + chromium-driver,
driven by python3-selenium), clicks Generate and waits for the images; then checks the job
the page made through the API, saves a screenshot and stops the server with SIGTERM.
Exit 77 (CTest's skip) with the reason when Chromium or Selenium is missing.

    python3 serve_browser.py --idiff build/idiff --out build/serve-browser
"""
import argparse
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import urllib.request

SKIP = 77


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--idiff", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--model_path", help="serve this checkpoint (with its flags.json) instead of "
                    "a two-step one (the README's screenshot)")
    args = ap.parse_args()
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
        from selenium.webdriver.common.by import By
        from selenium.webdriver.support.ui import WebDriverWait
    except ImportError as e:
        print(f"skipped: selenium is not installed ({e}); apt-get install python3-selenium")
        return SKIP
    chromium, driver = shutil.which("chromium"), shutil.which("chromedriver")
    if not chromium or not driver:
        print("skipped: chromium or chromedriver is missing; apt-get install chromium chromium-driver")
        return SKIP

    shutil.rmtree(args.out, ignore_errors=True)
    os.makedirs(args.out)
    model = ["--image_size", "32", "--image_channels", "1", "--num_channels", "32",
             "--num_res_blocks", "1", "--attention_resolutions", "", "--learn_sigma", "False"]
    checkpoint = args.model_path or f"{args.out}/train/model000002.pt"
    if not args.model_path:
        subprocess.run([args.idiff, "train", "--data_dir", "fashion-mnist", *model, "--batch_size", "4",
                        "--max_steps", "2", "--save_interval", "2", "--log_dir",
                        f"{args.out}/train", "--device", "cpu"], check=True, stdout=subprocess.DEVNULL)
    log = open(f"{args.out}/serve.log", "w+")
    server = subprocess.Popen([args.idiff, "serve", "--model_path", checkpoint,
                               "--port", "0", "--sampler", "unipc", "--steps", "5", "--device", "cpu"],
                              stdout=log, stderr=subprocess.STDOUT)
    try:
        port = None
        for _ in range(600):
            log.seek(0)
            m = re.search(r"listening on http://127\.0\.0\.1:(\d+)/", log.read())
            if m:
                port = int(m.group(1))
                break
            if server.poll() is not None:
                break
            time.sleep(0.1)
        assert port, "the server did not start"
        base = f"http://127.0.0.1:{port}"

        options = webdriver.ChromeOptions()
        options.binary_location = chromium
        for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                     "--window-size=1000,700"):
            options.add_argument(flag)
        browser = webdriver.Chrome(service=Service(driver), options=options)
        try:
            browser.get(base + "/")
            wait = WebDriverWait(browser, 60)
            wait.until(lambda b: len(b.find_elements(By.CSS_SELECTOR, "#sampler option")) > 3)
            count = browser.find_element(By.ID, "count")
            count.clear()
            count.send_keys("4")
            browser.find_element(By.ID, "seed").send_keys("3")
            browser.find_element(By.ID, "generate").click()
            wait.until(lambda b: len(b.find_elements(By.CSS_SELECTOR, "img.sample")) == 4 and all(
                b.execute_script("return arguments[0].complete && arguments[0].naturalWidth", i) == 32
                for i in b.find_elements(By.CSS_SELECTOR, "img.sample")))
            status = browser.find_element(By.ID, "status").text
            assert status.startswith("done: seed 3"), status
            assert browser.find_element(By.ID, "npz").is_displayed()
            width = browser.execute_script("return document.getElementById('fill').style.width")
            assert width == "100%", width
            job_id = browser.execute_script("return window.lastJob")
            browser.save_screenshot(f"{args.out}/serve_page.png")
        finally:
            browser.quit()
        job = json.load(urllib.request.urlopen(f"{base}/v1/jobs/{job_id}"))
        assert job["state"] == "completed" and job["seed"] == 3 and job["num_samples"] == 4, job
        assert job["progress"]["steps_done"] == 5, job
        png = urllib.request.urlopen(f"{base}/v1/jobs/{job_id}/images/3.png").read()
        assert png[:8] == b"\x89PNG\r\n\x1a\n"
        server.send_signal(signal.SIGTERM)
        assert server.wait(30) == 0, "the server did not exit 0 on SIGTERM"
        print(f"ok: 4 images of job {job_id} shown; screenshot {args.out}/serve_page.png")
        return 0
    finally:
        if server.poll() is None:
            server.kill()
        log.seek(0)
        print(log.read()[-2000:])


if __name__ == "__main__":
    sys.exit(main())
