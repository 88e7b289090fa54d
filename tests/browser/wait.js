// Shared by the browser scripts: waiting for a condition, and running a script's main().

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** Polls `check` until it returns something truthy, which it returns; fails after `ms`. */
async function until(what, check, ms = 30000) {
  const deadline = Date.now() + ms;
  for (;;) {
    const value = await check();
    if (value) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(100);
  }
}

/** Runs `main`, printing its result as JSON, or its error and exit code 1. */
function run(main) {
  main().then(
    (result) => {
      console.log(JSON.stringify(result));
      process.exit(0);
    },
    (e) => {
      console.error(e.stack || String(e));
      process.exit(1);
    },
  );
}

module.exports = { sleep, until, run };
