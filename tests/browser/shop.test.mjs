// Browser tests of the shopper page against a real `lookalike serve`, driven through
// Debian's chromium by playwright-core. Run by scripts/browser-test.sh, which builds a
// demo data folder, starts the server and sets:
//   LOOKALIKE_URL   the server's base URL, e.g. http://127.0.0.1:41234
//   LOOKALIKE_DEMO  the demo data folder (queries.jsonl and queries/ are read here)
//   LOOKALIKE_SEARCH_KEY  the server's search key (it also runs with --public-search)
//   LOOKALIKE_CHROMIUM  optional, the browser binary (default /usr/bin/chromium)
// Every test saves a screenshot under tests/browser/screenshots/.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';

const HERE = path.dirname(fileURLToPath(import.meta.url));
const SHOTS = path.join(HERE, 'screenshots');
const BASE = (process.env.LOOKALIKE_URL || '').replace(/\/$/, '');
const DEMO = process.env.LOOKALIKE_DEMO || '';
const SEARCH_KEY = process.env.LOOKALIKE_SEARCH_KEY || '';
const CHROMIUM = process.env.LOOKALIKE_CHROMIUM || '/usr/bin/chromium';
const TEST_TIMEOUT = 90_000;
const WAIT = 30_000;

let browser;
let query;  // {category, file} of a demo query photo

function pickQuery() {
  const lines = fs.readFileSync(path.join(DEMO, 'queries.jsonl'), 'utf8').split('\n').filter(Boolean);
  const queries = lines.map((l) => JSON.parse(l));
  const q = queries.find((x) => x.category === 'Sneaker') || queries[0];
  return { category: q.category, file: path.join(DEMO, q.image) };
}

before(async () => {
  assert.ok(BASE, 'LOOKALIKE_URL is not set: run the tests with scripts/browser-test.sh');
  assert.ok(DEMO, 'LOOKALIKE_DEMO is not set: run the tests with scripts/browser-test.sh');
  query = pickQuery();
  fs.mkdirSync(SHOTS, { recursive: true });
  // launch() gives the browser a fresh, temporary user-data dir of its own.
  browser = await chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  });
});

after(async () => {
  if (browser) await browser.close();
});

// Opens a fresh context (its own storage) and page; fails the test on page errors or
// Content-Security-Policy violations, and always saves a screenshot.
async function withPage(shot, options, fn) {
  const context = await browser.newContext({ viewport: { width: 1280, height: 900 }, ...options });
  context.setDefaultTimeout(WAIT);
  const page = await context.newPage();
  const problems = [];
  page.on('pageerror', (err) => problems.push(`page error: ${err.message}`));
  page.on('console', (msg) => {
    if (/Content Security Policy|Refused to (load|apply|execute)/i.test(msg.text())) {
      problems.push(`CSP: ${msg.text()}`);
    }
  });
  try {
    await fn(page, context);
  } finally {
    await page.screenshot({ path: path.join(SHOTS, shot) }).catch(() => {});
    await context.close();
  }
  assert.deepEqual(problems, [], 'the page reported errors');
}

// Predicates for page.waitForRequest / waitForResponse: a POST to /v1/search.
const isSearchRequest = (req) => req.url().startsWith(`${BASE}/v1/search`) && req.method() === 'POST';
const isSearch = (res) => isSearchRequest(res.request());

// Picks the query photo and waits for the first page of results to be drawn.
async function searchWith(page, file) {
  await page.goto(`${BASE}/`);
  const [response] = await Promise.all([
    page.waitForResponse(isSearch),
    page.setInputFiles('#file-input', file),
  ]);
  assert.equal(response.status(), 200, `search answered ${response.status()}: ${await response.text()}`);
  const body = await response.json();
  await expectGrid(page, body.results.map((r) => r.product_id));
  return body;
}

// Waits until the grid shows exactly these product ids, in this order.
async function expectGrid(page, ids) {
  assert.ok(ids.length > 0, 'the API returned no results');
  await page.waitForFunction((want) => {
    const got = Array.from(document.querySelectorAll('#grid .card'), (c) => c.dataset.productId);
    return got.length === want.length && got.every((id, i) => id === want[i]);
  }, ids);
}

const cardCategories = (page) =>
  page.$$eval('#grid .card', (cards) => cards.map((c) => c.dataset.category));

test('searching with a photo shows products of the same category', { timeout: TEST_TIMEOUT }, async () => {
  await withPage('01-search-results.png', {}, async (page) => {
    const body = await searchWith(page, query.file);
    const categories = await cardCategories(page);
    assert.equal(categories.length, body.results.length);
    assert.equal(categories[0], query.category, `top result is a ${categories[0]}, not a ${query.category}`);
    const top10 = categories.slice(0, 10);
    const same = top10.filter((c) => c === query.category).length;
    assert.ok(same >= 7, `only ${same} of the top ${top10.length} are ${query.category}: ${top10.join(', ')}`);

    // Each card shows what a shopper needs: photo, title, brand, price, rating, stock.
    const first = page.locator('#grid .card').first();
    const r = body.results[0];
    assert.equal((await first.locator('.card__open').textContent()).trim(), r.title);
    assert.equal((await first.locator('.card__brand').textContent()).trim(), r.brand);
    assert.match(await first.locator('.card__price').textContent(), /\d+\.\d\d/);
    assert.match(await first.locator('.rating').textContent(), /Rated \d\.\d out of 5/);
    assert.match(await first.locator('.stock').textContent(), /^(In stock|Only \d+ left|Out of stock)$/);
    await page.waitForFunction(() => {
      const img = document.querySelector('#grid .card img');
      return img && img.complete && img.naturalWidth > 0;
    });
    assert.match(await page.locator('#status').textContent(), /products that look like your photo/);
    // The query photo is shown with the crop box over it.
    await page.locator('#crop').waitFor({ state: 'visible' });

    // "Show more" asks for the next page and adds it below.
    const [next] = await Promise.all([page.waitForResponse(isSearch), page.click('#load-more')]);
    assert.equal(new URL(next.url()).searchParams.get('offset'), String(body.results.length));
    const more = (await next.json()).results.map((x) => x.product_id);
    await expectGrid(page, [...body.results.map((x) => x.product_id), ...more]);
    await page.locator('#grid .card').first().scrollIntoViewIfNeeded();
  });
});

test('words search alone, and narrow a photo search to the products matching them', { timeout: TEST_TIMEOUT }, async () => {
  await withPage('01b-text-search.png', {}, async (page) => {
    await page.goto(`${BASE}/`);
    await page.fill('#text-input', 'Northwind');
    const [alone] = await Promise.all([page.waitForResponse(isSearch), page.press('#text-input', 'Enter')]);
    assert.equal(alone.status(), 200, await alone.text());
    assert.equal(new URL(alone.url()).searchParams.get('text'), 'Northwind');
    const body = await alone.json();
    await expectGrid(page, body.results.map((r) => r.product_id));
    const brands = await page.$$eval('#grid .card .card__brand', (b) => b.map((x) => x.textContent.trim()));
    assert.ok(brands.length > 0 && brands.every((b) => b === 'Northwind'), `brands: ${brands.join(', ')}`);
    assert.match(await page.locator('#status').textContent(), /matching “Northwind”/);

    // A photo now: its results keep to the words, the photo's category first.
    const [withPhoto] = await Promise.all([
      page.waitForResponse(isSearch),
      page.setInputFiles('#file-input', query.file),
    ]);
    assert.equal(withPhoto.status(), 200, await withPhoto.text());
    assert.equal(new URL(withPhoto.url()).searchParams.get('text'), 'Northwind');
    const both = await withPhoto.json();
    await expectGrid(page, both.results.map((r) => r.product_id));
    assert.ok(both.results.every((r) => r.brand === 'Northwind'));
    assert.equal((await cardCategories(page))[0], query.category);
    assert.match(await page.locator('#status').textContent(), /look like your photo and match “Northwind”/);

    // Emptying the box goes back to the photo alone.
    await page.fill('#text-input', '');
    const [photoOnly] = await Promise.all([page.waitForResponse(isSearch), page.click('#text-submit')]);
    assert.equal(photoOnly.status(), 200);
    assert.equal(new URL(photoOnly.url()).searchParams.get('text'), null);
    await expectGrid(page, (await photoOnly.json()).results.map((r) => r.product_id));
  });
});

test('moving the crop box searches again with a crop and updates the results', { timeout: TEST_TIMEOUT }, async () => {
  await withPage('02-crop-moved.png', {}, async (page) => {
    await searchWith(page, query.file);
    const size = await page.$eval('#query-img', (img) => ({ w: img.naturalWidth, h: img.naturalHeight }));
    await page.locator('#crop').waitFor({ state: 'visible' });

    // Drag the bottom-right corner in: the box shrinks to the top-left part.
    const frame = await page.locator('#query-frame').boundingBox();
    const handle = await page.locator('.crop__handle--se').boundingBox();
    const hx = handle.x + handle.width / 2;
    const hy = handle.y + handle.height / 2;
    let [request] = await Promise.all([
      page.waitForRequest((r) => isSearchRequest(r) && new URL(r.url()).searchParams.has('crop')),
      (async () => {
        await page.mouse.move(hx, hy);
        await page.mouse.down();
        await page.mouse.move(hx - frame.width * 0.35, hy - frame.height * 0.35, { steps: 8 });
        await page.mouse.up();
      })(),
    ]);
    let response = await request.response();
    const crop1 = new URL(request.url()).searchParams.get('crop').split(',').map(Number);
    assert.equal(crop1.length, 4);
    const [x1, y1, w1, h1] = crop1;
    assert.ok(x1 === 0 && y1 === 0, `a corner drag keeps the box's top-left corner: ${crop1}`);
    assert.ok(w1 < size.w && h1 < size.h && w1 > 0 && h1 > 0, `the box shrank inside the photo: ${crop1}`);
    assert.equal(response.status(), 200);
    await expectGrid(page, (await response.json()).results.map((r) => r.product_id));

    // Drag the box itself down and right: a new search with the box moved.
    const box = await page.locator('#crop').boundingBox();
    const cx = box.x + box.width / 2;
    const cy = box.y + box.height / 2;
    [request] = await Promise.all([
      page.waitForRequest((r) => isSearchRequest(r) && new URL(r.url()).searchParams.get('crop') !== crop1.join(',')),
      (async () => {
        await page.mouse.move(cx, cy);
        await page.mouse.down();
        await page.mouse.move(cx + frame.width * 0.2, cy + frame.height * 0.2, { steps: 8 });
        await page.mouse.up();
      })(),
    ]);
    response = await request.response();
    const [x2, y2, w2, h2] = new URL(request.url()).searchParams.get('crop').split(',').map(Number);
    assert.ok(x2 > 0 && y2 > 0, `the box moved: ${[x2, y2, w2, h2]}`);
    assert.deepEqual([w2, h2], [w1, h1], 'moving keeps the size');
    assert.ok(x2 + w2 <= size.w && y2 + h2 <= size.h, 'the box stays inside the photo');
    assert.equal(response.status(), 200);
    const body = await response.json();
    await expectGrid(page, body.results.map((r) => r.product_id));
    assert.match(await page.locator('#status').textContent(), /selected part of your photo/);

    // Keyboard: an arrow key on the focused box moves it by a pixel and searches again.
    await page.locator('#crop').focus();
    [request] = await Promise.all([
      page.waitForRequest((r) => isSearchRequest(r) && new URL(r.url()).searchParams.get('crop') !== [x2, y2, w2, h2].join(',')),
      page.keyboard.press('ArrowLeft'),
    ]);
    assert.equal(new URL(request.url()).searchParams.get('crop'), [x2 - 1, y2, w2, h2].join(','));
    await request.response();
    await page.waitForFunction(() => document.querySelector('#grid').getAttribute('aria-busy') === 'false');
  });
});

test('choosing a facet narrows the results and the sort orders them', { timeout: TEST_TIMEOUT }, async () => {
  await withPage('03-facets.png', {}, async (page) => {
    const first = await searchWith(page, query.file);
    assert.ok(first.facets, 'the page asks for facets');
    await page.locator('#refine').waitFor({ state: 'visible' });
    // A brand among the best matches: ticking it leaves only that brand, as many as it counted.
    const chosen = first.facets.brand[first.facets.brand.length - 1];
    const option = page.locator('fieldset[data-facet="brand"] label', { hasText: chosen.value });
    assert.match(await option.textContent(), new RegExp(`\\(${chosen.count}\\)`));
    const [response] = await Promise.all([page.waitForResponse(isSearch), option.locator('input').check()]);
    assert.equal(response.status(), 200, await response.text());
    assert.ok(new URL(response.url()).searchParams.get('filter') === `brand IN ("${chosen.value}")`, response.url());
    const body = await response.json();
    await expectGrid(page, body.results.map((r) => r.product_id));
    const brands = await page.$$eval('#grid .card .card__brand', (nodes) => nodes.map((n) => n.textContent.trim()));
    assert.ok(brands.length >= Math.min(chosen.count, 10), `${brands.length} results, the facet said ${chosen.count}`);
    assert.ok(brands.every((b) => b.toLowerCase() === chosen.value.toLowerCase()), `not all ${chosen.value}: ${brands}`);
    assert.ok(body.results.every((r) => r.brand === chosen.value));

    // Sorting by price, cheapest first, within the filter.
    const [sorted] = await Promise.all([page.waitForResponse(isSearch), page.selectOption('#sort', 'price_asc')]);
    const sortedBody = await sorted.json();
    await expectGrid(page, sortedBody.results.map((r) => r.product_id));
    const prices = sortedBody.results.map((r) => r.price);
    assert.deepEqual(prices, [...prices].sort((a, b) => a - b));
    assert.ok(sortedBody.results.every((r) => r.brand === chosen.value));

    // Unticking brings every brand back.
    const [cleared] = await Promise.all([page.waitForResponse(isSearch),
      page.locator('fieldset[data-facet="brand"] label', { hasText: chosen.value }).locator('input').uncheck()]);
    const clearedBody = await cleared.json();
    await expectGrid(page, clearedBody.results.map((r) => r.product_id));
    assert.ok(!decodeURIComponent(cleared.url()).includes('filter='));
  });
});

test('"This exact item" searches for the photographed product itself', { timeout: TEST_TIMEOUT }, async () => {
  // A catalog product's own photo (one without colour variants, so it is its own result).
  const lines = fs.readFileSync(path.join(DEMO, 'catalog.jsonl'), 'utf8').split('\n').filter(Boolean);
  const product = lines.map((l) => JSON.parse(l)).find((p) => !p.group_id && p.images && p.images.length);
  assert.ok(product, 'the demo catalog has a product without variants');
  await withPage('03-exact-item.png', {}, async (page) => {
    await searchWith(page, path.join(DEMO, product.images[0]));
    await page.locator('#refine').waitFor({ state: 'visible' });
    const [response] = await Promise.all([page.waitForResponse(isSearch), page.check('#exact')]);
    assert.equal(response.status(), 200, await response.text());
    assert.equal(new URL(response.url()).searchParams.get('match'), 'exact', response.url());
    const body = await response.json();
    await expectGrid(page, body.results.map((r) => r.product_id));
    assert.equal(body.results[0].product_id, product.id, 'the photographed product is not first');

    // Unticked, the search is by look again.
    const [similar] = await Promise.all([page.waitForResponse(isSearch), page.uncheck('#exact')]);
    assert.equal(new URL(similar.url()).searchParams.get('match'), null, similar.url());
    await expectGrid(page, (await similar.json()).results.map((r) => r.product_id));
  });
});

test('"More like this" shows products similar to that product', { timeout: TEST_TIMEOUT }, async () => {
  await withPage('03-more-like-this.png', {}, async (page) => {
    await searchWith(page, query.file);
    const card = page.locator('#grid .card').first();
    const id = await card.getAttribute('data-product-id');
    const category = await card.getAttribute('data-category');
    const title = (await card.locator('.card__open').textContent()).trim();
    const [response] = await Promise.all([
      page.waitForResponse((r) => r.url().startsWith(`${BASE}/v1/products/${encodeURIComponent(id)}/similar`)),
      card.getByRole('button', { name: `More like this: ${title}` }).click(),
    ]);
    assert.equal(response.status(), 200);
    const body = await response.json();
    const ids = body.results.map((r) => r.product_id);
    await expectGrid(page, ids);
    assert.equal((await page.locator('#results-heading').textContent()).trim(), `More like ${title}`);
    const categories = await cardCategories(page);
    const same = categories.slice(0, 10).filter((c) => c === category).length;
    assert.ok(same >= 7, `only ${same} of the top 10 similar products are ${category}: ${categories.join(', ')}`);

    // And back to the photo's results.
    await page.locator('#back-to-photo').waitFor({ state: 'visible' });
    const [again] = await Promise.all([page.waitForResponse(isSearch), page.click('#back-to-photo')]);
    await expectGrid(page, (await again.json()).results.map((r) => r.product_id));
    assert.equal((await page.locator('#results-heading').textContent()).trim(), 'Products that look alike');
    // Leave the screenshot on the "more like this" view.
    await Promise.all([
      page.waitForResponse((r) => r.url().includes('/similar')),
      page.locator('#grid .card').first().locator('.card__similar').click(),
    ]);
    await page.waitForFunction(() => document.querySelector('#grid').getAttribute('aria-busy') === 'false');
  });
});

test('"Why this result?" breaks each score down', { timeout: TEST_TIMEOUT }, async () => {
  await withPage('03b-why-this-result.png', {}, async (page) => {
    const [request] = await Promise.all([
      page.waitForRequest(isSearchRequest),
      searchWith(page, query.file),
    ]);
    assert.equal(new URL(request.url()).searchParams.get('explain'), 'true');
    const body = await (await request.response()).json();
    const r = body.results[0];
    assert.ok(r.explain && r.explain.components, `no explain in ${JSON.stringify(r)}`);

    const card = page.locator('#grid .card').first();
    const why = card.locator('details.why');
    assert.equal(await why.getAttribute('open'), null, 'the breakdown starts collapsed');
    await why.locator('summary').click();
    await why.locator('.why__list').waitFor({ state: 'visible' });

    // One row per component that moved the score, biggest first; they add up to the score.
    const rows = await why.locator('.why__part').evaluateAll((els) =>
      els.map((e) => ({ name: e.dataset.component, contribution: Number(e.dataset.contribution) })));
    const moved = Object.entries(r.explain.components).filter(([, c]) => c.contribution !== 0);
    assert.deepEqual(rows.map((x) => x.name).sort(), moved.map(([name]) => name).sort());
    for (let i = 1; i < rows.length; i++) {
      assert.ok(Math.abs(rows[i - 1].contribution) >= Math.abs(rows[i].contribution), 'rows are biggest first');
    }
    const sum = rows.reduce((acc, x) => acc + x.contribution, 0);
    assert.ok(Math.abs(sum - r.score) < 1e-4, `rows add up to ${sum}, the score is ${r.score}`);
    assert.equal((await why.locator('.why__total .why__value').textContent()).trim(), r.explain.score.toFixed(2));
    assert.match(await why.locator('[data-component="visual"] .why__label').textContent(),
      /Looks like your photo \(similarity \d\.\d{3}\)/);
    // Opening the breakdown does not open the product.
    assert.equal(await page.locator('#product-dialog').isVisible(), false);
  });
});

test('a product opens with its details and goes into the cart, which survives a reload', { timeout: TEST_TIMEOUT }, async () => {
  await withPage('04-product-and-cart.png', {}, async (page) => {
    const body = await searchWith(page, query.file);
    assert.equal(await page.locator('#cart-count').isVisible(), false, 'an empty cart shows no count');

    // A product that is sold out cannot be added.
    const soldOut = body.results.findIndex((r) => r.stock <= 0);
    if (soldOut >= 0) {
      await page.locator('#grid .card__open').nth(soldOut).click();
      await page.locator('#product-dialog').waitFor({ state: 'visible' });
      const button = page.locator('#add-to-cart');
      assert.equal((await button.textContent()).trim(), 'Out of stock');
      assert.equal(await button.isDisabled(), true);
      await page.keyboard.press('Escape');
      await page.locator('#product-dialog').waitFor({ state: 'hidden' });
    }

    const index = body.results.findIndex((r) => r.stock > 0);
    assert.ok(index >= 0, 'no result is in stock');
    const first = body.results[index];
    const [detail] = await Promise.all([
      page.waitForResponse((r) => r.url() === `${BASE}/v1/products/${encodeURIComponent(first.product_id)}`),
      page.locator('#grid .card__open').nth(index).click(),
    ]);
    assert.equal(detail.status(), 200);
    const dialog = page.locator('#product-dialog');
    await dialog.waitFor({ state: 'visible' });
    assert.equal((await page.locator('#product-title').textContent()).trim(), first.title);
    assert.equal(await dialog.getAttribute('data-product-id'), first.product_id);
    await page.waitForFunction(() => {
      const img = document.querySelector('#product-photo');
      return img.complete && img.naturalWidth > 0;
    });
    assert.match(await page.locator('#product-details').textContent(), new RegExp(`Category\\s*${first.category}`));
    await page.screenshot({ path: path.join(SHOTS, '04a-product-dialog.png') });

    await page.getByRole('button', { name: 'Add to cart' }).click();
    await page.locator('#cart-count').waitFor({ state: 'visible' });
    assert.equal((await page.locator('#cart-count').textContent()).trim(), '1');
    assert.equal(await page.locator('#cart-button').getAttribute('aria-label'), 'Cart, 1 item');

    await page.keyboard.press('Escape');
    await dialog.waitFor({ state: 'hidden' });

    await page.reload();
    await page.locator('#cart-count').waitFor({ state: 'visible' });
    assert.equal((await page.locator('#cart-count').textContent()).trim(), '1');
    await page.click('#cart-button');
    const item = page.locator('#cart-list .cart-item');
    await item.first().waitFor({ state: 'visible' });
    assert.equal(await item.count(), 1);
    assert.equal(await item.first().getAttribute('data-product-id'), first.product_id);
    assert.equal((await item.first().locator('.cart-item__title').textContent()).trim(), first.title);
    await page.waitForFunction(() => {
      const img = document.querySelector('#cart-list img');
      return img && img.complete && img.naturalWidth > 0;
    });
  });
});

test('a photo can be dropped on the page or pasted', { timeout: TEST_TIMEOUT }, async () => {
  await withPage('05-drop-and-paste.png', {}, async (page) => {
    await page.goto(`${BASE}/`);
    const b64 = fs.readFileSync(query.file).toString('base64');
    const send = (kind) => page.evaluate(([data, how]) => {
      const bytes = Uint8Array.from(atob(data), (c) => c.charCodeAt(0));
      const dt = new DataTransfer();
      dt.items.add(new File([bytes], 'query.png', { type: 'image/png' }));
      if (how === 'paste') {
        document.dispatchEvent(new ClipboardEvent('paste', { clipboardData: dt, bubbles: true, cancelable: true }));
      } else {
        const zone = document.querySelector('#dropzone');
        for (const type of ['dragenter', 'dragover', 'drop']) {
          zone.dispatchEvent(new DragEvent(type, { dataTransfer: dt, bubbles: true, cancelable: true }));
        }
      }
    }, [b64, kind]);
    for (const kind of ['drop', 'paste']) {
      const [response] = await Promise.all([page.waitForResponse(isSearch), send(kind)]);
      assert.equal(response.status(), 200, `${kind}: search answered ${response.status()}`);
      await expectGrid(page, (await response.json()).results.map((r) => r.product_id));
      await page.locator('#crop').waitFor({ state: 'visible' });
    }
  });
});

test('a file that is not a photo gets a clear message', { timeout: TEST_TIMEOUT }, async () => {
  await withPage('06-not-a-photo.png', {}, async (page) => {
    await page.goto(`${BASE}/`);
    const [response] = await Promise.all([
      page.waitForResponse(isSearch),
      page.setInputFiles('#file-input', {
        name: 'shopping-list.txt', mimeType: 'text/plain', buffer: Buffer.from('milk, eggs, a new pair of sneakers\n'),
      }),
    ]);
    assert.equal(response.status(), 415);
    const alert = page.locator('#status [role="alert"]');
    await alert.waitFor({ state: 'visible' });
    assert.match(await alert.textContent(), /That file isn't a photo we can read/);
    assert.match(await alert.textContent(), /try a JPEG, PNG or WebP/i);
    assert.equal(await page.locator('#grid .card').count(), 0);
    assert.equal(await page.locator('#query').isVisible(), false, 'no broken photo is left on show');
  });
});

test('a damaged photo gets a clear message', { timeout: TEST_TIMEOUT }, async () => {
  await withPage('07-damaged-photo.png', {}, async (page) => {
    await page.goto(`${BASE}/`);
    // A PNG signature and header followed by garbage: the right format, undecodable.
    const png = fs.readFileSync(query.file);
    const broken = Buffer.concat([png.subarray(0, 33), Buffer.alloc(200, 0x5a)]);
    const [response] = await Promise.all([
      page.waitForResponse(isSearch),
      page.setInputFiles('#file-input', { name: 'photo.png', mimeType: 'image/png', buffer: broken }),
    ]);
    assert.equal(response.status(), 422);
    const alert = page.locator('#status [role="alert"]');
    await alert.waitFor({ state: 'visible' });
    assert.match(await alert.textContent(), /That photo seems to be damaged/);
  });
});

test('on a phone-sized screen the page fits without sideways scrolling', { timeout: TEST_TIMEOUT }, async () => {
  await withPage('08-phone.png', { viewport: { width: 375, height: 667 }, isMobile: true, hasTouch: true }, async (page) => {
    const body = await searchWith(page, query.file);
    const widths = await page.evaluate(() => ({
      doc: document.documentElement.scrollWidth, body: document.body.scrollWidth, view: window.innerWidth,
    }));
    assert.equal(widths.view, 375);
    assert.ok(widths.doc <= widths.view && widths.body <= widths.view, `content is wider than the screen: ${JSON.stringify(widths)}`);
    // Two cards a row, each inside the screen.
    const boxes = await page.$$eval('#grid .card', (cards) => cards.slice(0, 4).map((c) => {
      const r = c.getBoundingClientRect();
      return { x: Math.round(r.left), right: Math.round(r.right), top: Math.round(r.top) };
    }));
    assert.equal(new Set(boxes.map((b) => b.x)).size, 2, `expected 2 columns: ${JSON.stringify(boxes)}`);
    assert.equal(boxes[0].top, boxes[1].top);
    for (const b of boxes) assert.ok(b.x >= 0 && b.right <= 375, `card off screen: ${JSON.stringify(b)}`);
    await page.locator('#results-heading').scrollIntoViewIfNeeded();
    await page.waitForFunction(() => Array.from(document.querySelectorAll('#grid .card img')).slice(0, 2)
      .every((img) => img.complete && img.naturalWidth > 0));
    await page.screenshot({ path: path.join(SHOTS, '08a-phone-results.png') });

    // The product dialog fits too, and its button can be reached.
    await page.locator('#grid .card__open').nth(body.results.findIndex((r) => r.stock > 0)).tap();
    await page.locator('#product-dialog').waitFor({ state: 'visible' });
    const dialog = await page.locator('#product-dialog').boundingBox();
    assert.ok(dialog.x >= 0 && dialog.x + dialog.width <= 375, `dialog wider than the screen: ${JSON.stringify(dialog)}`);
    await page.getByRole('button', { name: 'Add to cart' }).tap();
    await page.locator('#cart-count').waitFor({ state: 'visible' });
    const overflow = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
    assert.ok(overflow <= 0, `scrolls sideways by ${overflow}px with the dialog open`);
  });
});

test('the keyboard reaches the photo button and the first result', { timeout: TEST_TIMEOUT }, async () => {
  await withPage('09-keyboard.png', {}, async (page) => {
    // Intercept file choosers from the start: turning that on is asynchronous, and a
    // chooser opened before it is on would be the native one, never reported.
    const choosers = [];
    page.on('filechooser', (chooser) => choosers.push(chooser));
    await page.goto(`${BASE}/`);
    const focused = () => page.evaluate(() => {
      const a = document.activeElement;
      return { id: a.id, cls: a.className, text: (a.textContent || '').trim() };
    });
    let tabs = 0;
    for (; tabs < 10 && (await focused()).id !== 'pick-file'; tabs += 1) await page.keyboard.press('Tab');
    assert.equal((await focused()).id, 'pick-file', `Tab did not reach the photo button in ${tabs} presses`);
    const ring = await page.$eval('#pick-file', (b) => {
      const s = getComputedStyle(b);
      return { style: s.outlineStyle, width: parseFloat(s.outlineWidth) };
    });
    assert.ok(ring.style !== 'none' && ring.width >= 2, `no visible focus ring: ${JSON.stringify(ring)}`);
    await page.screenshot({ path: path.join(SHOTS, '09a-keyboard-file-button.png') });

    // Enter opens the file picker.
    await page.keyboard.press('Enter');
    for (let i = 0; i < 100 && choosers.length === 0; i += 1) await page.waitForTimeout(50);
    assert.equal(choosers.length, 1, 'Enter on the photo button opens the file picker');
    const chooser = choosers[0];
    const [response] = await Promise.all([page.waitForResponse(isSearch), chooser.setFiles(query.file)]);
    const body = await response.json();
    await expectGrid(page, body.results.map((r) => r.product_id));

    // Tab on to the first result (past the crop box and its button).
    const firstTitle = body.results[0].title;
    for (tabs = 0; tabs < 25; tabs += 1) {
      await page.keyboard.press('Tab');
      const f = await focused();
      if (f.cls.includes('card__open')) break;
    }
    const f = await focused();
    assert.ok(f.cls.includes('card__open'), `Tab did not reach a result: on ${JSON.stringify(f)}`);
    assert.equal(f.text, firstTitle, 'the first result is the first one reached');

    // Enter opens it, Escape closes it and gives the focus back.
    await page.keyboard.press('Enter');
    await page.locator('#product-dialog').waitFor({ state: 'visible' });
    await page.keyboard.press('Escape');
    await page.locator('#product-dialog').waitFor({ state: 'hidden' });
    assert.equal((await focused()).text, firstTitle, 'focus returns to the result');
    await page.locator('#grid .card').first().scrollIntoViewIfNeeded();
  });
});

test('a shop that needs a search key asks for one and retries with it', { timeout: TEST_TIMEOUT }, async () => {
  assert.ok(SEARCH_KEY, 'LOOKALIKE_SEARCH_KEY is not set: run the tests with scripts/browser-test.sh');
  // The demo server runs with --public-search; its first answer here is made a 401 to
  // see what the page does with one. A wrong key then gets the server's own 403.
  await withPage('10-search-key.png', {}, async (page) => {
    let refused = 0;
    await page.route(`${BASE}/v1/search**`, async (route) => {
      if (refused === 0) {
        refused += 1;
        await route.fulfill({
          status: 401, contentType: 'application/json',
          body: JSON.stringify({ error: { code: 'unauthorized', message: 'a search key is required' } }),
        });
      } else {
        await route.continue();
      }
    });
    await page.goto(`${BASE}/`);
    await page.setInputFiles('#file-input', query.file);
    await page.locator('#key-form').waitFor({ state: 'visible' });
    assert.match(await page.locator('#status').textContent(), /This shop needs a search key/);
    await page.screenshot({ path: path.join(SHOTS, '10a-search-key-asked.png') });

    const keyField = page.getByLabel('Search key');
    await keyField.fill('not-the-key');
    let [response] = await Promise.all([page.waitForResponse(isSearch), keyField.press('Enter')]);
    assert.equal(response.status(), 403, 'a wrong key is refused');
    await page.getByText("That search key wasn't accepted").waitFor({ state: 'visible' });
    await page.locator('#key-form').waitFor({ state: 'visible' });

    await keyField.fill(SEARCH_KEY);
    [response] = await Promise.all([page.waitForResponse(isSearch), keyField.press('Enter')]);
    assert.equal(response.request().headers().authorization, `Bearer ${SEARCH_KEY}`);
    assert.equal(response.status(), 200);
    await expectGrid(page, (await response.json()).results.map((r) => r.product_id));
    assert.equal(await page.locator('#key-form').isVisible(), false);
    assert.equal(await page.evaluate(() => sessionStorage.getItem('lookalike.searchKey')), SEARCH_KEY);
    // With a key, product photos are fetched with it and shown from blob: URLs.
    await page.waitForFunction(() => {
      const img = document.querySelector('#grid .card img');
      return img && img.src.startsWith('blob:') && img.complete && img.naturalWidth > 0;
    });
  });
});

test('a busy shop says so and offers to try again', { timeout: TEST_TIMEOUT }, async () => {
  await withPage('11-busy.png', {}, async (page) => {
    let busy = true;
    await page.route(`${BASE}/v1/search**`, async (route) => {
      if (busy) {
        await route.fulfill({
          status: 503, contentType: 'application/json', headers: { 'Retry-After': '1' },
          body: JSON.stringify({ error: { code: 'overloaded', message: 'queue full' } }),
        });
      } else {
        await route.continue();
      }
    });
    await page.goto(`${BASE}/`);
    await page.setInputFiles('#file-input', query.file);
    const alert = page.locator('#status [role="alert"]');
    await alert.waitFor({ state: 'visible' });
    assert.match(await alert.textContent(), /busy/i);
    await page.screenshot({ path: path.join(SHOTS, '11a-busy-message.png') });
    busy = false;
    const [response] = await Promise.all([
      page.waitForResponse(isSearch),
      page.getByRole('button', { name: 'Try again' }).click(),
    ]);
    await expectGrid(page, (await response.json()).results.map((r) => r.product_id));
  });
});

test('a search without results says so', { timeout: TEST_TIMEOUT }, async () => {
  // Any photo finds its nearest products in the demo catalog; this stands in for a
  // shop whose filters leave nothing.
  await withPage('12-no-results.png', {}, async (page) => {
    await page.route(`${BASE}/v1/search**`, (route) => route.fulfill({
      status: 200, contentType: 'application/json',
      body: JSON.stringify({ results: [], k: 20, offset: 0, took_ms: 1 }),
    }));
    await page.goto(`${BASE}/`);
    await page.setInputFiles('#file-input', query.file);
    await page.getByText('No similar products found').waitFor({ state: 'visible' });
    assert.equal(await page.locator('#grid .card').count(), 0);
    assert.equal(await page.locator('#load-more').isVisible(), false);
  });
});

test('a photo taken with the camera is searched', { timeout: TEST_TIMEOUT }, async () => {
  // Its own browser: chromium's fake camera (a moving test pattern) stands in for a real one.
  const camBrowser = await chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync',
      '--use-fake-device-for-media-stream', '--use-fake-ui-for-media-stream'],
  });
  const context = await camBrowser.newContext({ viewport: { width: 1280, height: 900 }, permissions: ['camera'] });
  context.setDefaultTimeout(WAIT);
  const page = await context.newPage();
  try {
    await page.goto(`${BASE}/`);
    await page.locator('#open-camera').waitFor({ state: 'visible' });
    await page.click('#open-camera');
    await page.locator('#camera-dialog').waitFor({ state: 'visible' });
    await page.waitForFunction(() => {
      const v = document.querySelector('#camera-video');
      return v.videoWidth > 0 && !document.querySelector('#camera-capture').disabled;
    });
    await page.screenshot({ path: path.join(SHOTS, '13a-camera.png') });
    const [request] = await Promise.all([page.waitForRequest(isSearchRequest), page.click('#camera-capture')]);
    assert.match(request.headers()['content-type'], /^multipart\/form-data/);
    const response = await request.response();
    assert.equal(response.status(), 200);
    await expectGrid(page, (await response.json()).results.map((r) => r.product_id));
    await page.locator('#camera-dialog').waitFor({ state: 'hidden' });
    const size = await page.$eval('#query-img', (img) => [img.naturalWidth, img.naturalHeight]);
    assert.ok(size[0] > 0 && size[1] > 0, 'the captured frame is shown as the query photo');
    assert.equal(await page.evaluate(() => document.querySelector('#camera-video').srcObject), null, 'camera released');
  } finally {
    await page.screenshot({ path: path.join(SHOTS, '13-camera-results.png') }).catch(() => {});
    await camBrowser.close();
  }
});

test('variants show as swatches that switch the card, and the product view compares them',
  { timeout: TEST_TIMEOUT }, async () => {
    // A family of three colour variants with the photo of the query's best match, added with the
    // admin key (keys.json in the data folder), so the family comes first for the query photo.
    const keys = JSON.parse(fs.readFileSync(path.join(DEMO, 'keys.json'), 'utf8'));
    const admin = { Authorization: `Bearer ${keys.admin_key}` };
    const photo = fs.readFileSync(query.file);
    const found = await (await fetch(`${BASE}/v1/search?k=1`, {
      method: 'POST', headers: { 'Content-Type': 'image/png' }, body: photo,
    })).json();
    const best = found.results[0];
    const image = Buffer.from(await (await fetch(`${BASE}${best.image_url}`)).arrayBuffer()).toString('base64');
    const variants = [
      { id: 'browser-red', color: 'red', size: '40', price: 31.5, stock: 4 },
      { id: 'browser-blue', color: 'blue', size: '42', price: 27.25, stock: 0 },
      { id: 'browser-green', color: 'green', size: '44', price: 35, stock: 9 },
    ];
    const put = async (v) => {
      const r = await fetch(`${BASE}/v1/products/${v.id}`, {
        method: 'PUT', headers: { ...admin, 'Content-Type': 'application/json' },
        body: JSON.stringify({
          title: `Browser runner ${v.color}`, brand: 'Fjord', category: best.category, price: v.price,
          currency: 'EUR', stock: v.stock, rating: 4.5, rating_count: 80, group_id: 'browser-family',
          attributes: { color: v.color, size: v.size, material: 'mesh' }, images_base64: [image],
        }),
      });
      assert.equal(r.status, 200, await r.text());
    };
    for (const v of variants) await put(v);
    try {
      await withPage('14-variants.png', {}, async (page) => {
        const body = await searchWith(page, query.file);
        const family = body.results.filter((r) => r.product_id.startsWith('browser-'));
        assert.equal(family.length, 1, 'the family is one result');
        const card = page.locator(`#grid .card[data-product-id="${family[0].product_id}"]`);
        const swatches = card.locator('.swatch');
        assert.deepEqual(await swatches.allTextContents(), ['blue · 42', 'green · 44', 'red · 40']);
        assert.equal(await card.locator('.swatch[aria-pressed="true"]').getAttribute('data-variant-id'),
          family[0].product_id);

        // Another swatch: the card shows that variant's price, stock and photo, and opens it.
        const other = variants.find((v) => v.id !== family[0].product_id && v.stock > 0);
        await card.locator(`.swatch[data-variant-id="${other.id}"]`).click();
        await page.waitForFunction((id) =>
          document.querySelector(`#grid .card[data-shown-id="${id}"]`) !== null, other.id);
        assert.match(await card.locator('.card__price').textContent(), new RegExp(other.price.toFixed(2)));
        assert.match(await card.locator('.stock').textContent(), /In stock|Only \d+ left/);
        assert.equal(await card.locator(`.swatch[data-variant-id="${other.id}"]`).getAttribute('aria-pressed'), 'true');
        await page.waitForFunction((id) => {
          const img = document.querySelector(`#grid .card[data-shown-id="${id}"] .card__img`);
          return img && img.complete && img.naturalWidth > 0;
        }, other.id);

        // The product view of that variant: the comparison table lists the family.
        await card.locator('.card__open').click();
        await page.locator('#product-dialog').waitFor({ state: 'visible' });
        assert.equal(await page.getAttribute('#product-dialog', 'data-product-id'), other.id);
        await page.locator('#product-compare').waitFor({ state: 'visible' });
        const rows = page.locator('#compare-rows tr');
        assert.deepEqual(await rows.evaluateAll((trs) => trs.map((tr) => tr.dataset.variantId)),
          ['browser-blue', 'browser-green', 'browser-red']);
        assert.equal(await page.locator('#compare-rows tr[aria-current="true"]').getAttribute('data-variant-id'),
          other.id);
        const blue = await page.locator('#compare-rows tr[data-variant-id="browser-blue"] td').allTextContents();
        assert.equal(blue[1], 'blue');
        assert.equal(blue[2], '42');
        assert.equal(blue[3], 'mesh');
        assert.match(blue[4], /27\.25/);
        assert.match(blue[5], /out of stock/i);

        // Opening another variant from the table shows it, with the table still there.
        await page.locator('#compare-rows tr[data-variant-id="browser-blue"] .compare__open').click();
        await page.waitForFunction(() =>
          document.querySelector('#product-dialog').dataset.productId === 'browser-blue');
        await page.waitForFunction(() => document.querySelector('#compare-rows tr[aria-current="true"]')
          ?.dataset.variantId === 'browser-blue');
      });
    } finally {
      for (const v of variants) await fetch(`${BASE}/v1/products/${v.id}`, { method: 'DELETE', headers: admin });
    }
  });
