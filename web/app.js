// The lookalike shopper page: search the shop by photo (file, drop, paste, camera),
// narrow the search with a crop box, browse results, "more like this", a product
// dialog and a cart kept in localStorage. Plain JS, no dependencies; it speaks only
// the HTTP API in docs/API.md. Content-Security-Policy safe: no inline code, no
// eval, no style attributes (positions are set through the CSSOM).
'use strict';

(() => {
  const PAGE_SIZE = 20;          // results per request (k)
  const MAX_WINDOW = 1000;       // the API refuses k + offset > 1000
  const SEARCH_DELAY_MS = 350;   // debounce between crop moves and the search they trigger
  const LOW_STOCK = 5;           // "only N left" at or below this
  const KEY_STORE = 'lookalike.searchKey';  // sessionStorage
  const CART_STORE = 'lookalike.cart';      // localStorage

  const $ = (id) => document.getElementById(id);
  const el = {
    dropzone: $('dropzone'), dropzoneText: $('dropzone-text'), pickFile: $('pick-file'),
    fileInput: $('file-input'), openCamera: $('open-camera'),
    textForm: $('text-form'), textInput: $('text-input'),
    query: $('query'), queryFrame: $('query-frame'), queryImg: $('query-img'), crop: $('crop'),
    resetCrop: $('reset-crop'), cropInfo: $('crop-info'),
    keyForm: $('key-form'), keyInput: $('key-input'),
    resultsHeading: $('results-heading'), backToPhoto: $('back-to-photo'),
    refine: $('refine'), sort: $('sort'), exact: $('exact'), facets: $('facets'),
    status: $('status'), grid: $('grid'), loadMore: $('load-more'),
    cartButton: $('cart-button'), cartCount: $('cart-count'),
    productDialog: $('product-dialog'), productClose: $('product-close'),
    productPhoto: $('product-photo'), productThumbs: $('product-thumbs'),
    productBrand: $('product-brand'), productTitle: $('product-title'),
    productRating: $('product-rating'), productPrice: $('product-price'),
    productStock: $('product-stock'), productDetails: $('product-details'),
    addToCart: $('add-to-cart'), productSimilar: $('product-similar'), productNote: $('product-note'),
    productCompare: $('product-compare'), compareRows: $('compare-rows'),
    cartDialog: $('cart-dialog'), cartClose: $('cart-close'), cartList: $('cart-list'),
    cartEmpty: $('cart-empty'), cartTotal: $('cart-total'), cartTotalValue: $('cart-total-value'),
    cameraDialog: $('camera-dialog'), cameraClose: $('camera-close'), cameraVideo: $('camera-video'),
    cameraMessage: $('camera-message'), cameraCapture: $('camera-capture'),
    cameraCancel: $('camera-cancel'), cameraCanvas: $('camera-canvas'),
  };

  const state = {
    file: null,          // the query photo (File or Blob)
    fileUrl: null,       // its object URL, shown in the query frame
    natural: null,       // {w, h} of the query photo in its own pixels
    crop: null,          // {x, y, width, height} in those pixels
    mode: 'idle',        // 'idle' | 'photo' | 'text' | 'similar'
    text: '',            // words the results must match: alone ('text') or with the photo
    similarOf: null,     // {id, title} when mode is 'similar'
    offset: 0,           // offset of the next page
    seq: 0,              // increases with every request; stale answers are dropped
    controller: null,    // AbortController of the request in flight
    retry: null,         // what "Try again" (or entering a key) re-runs
    product: null,       // the product shown in the dialog
    sort: 'best',        // best | price_asc | price_desc | rating
    match: 'similar',    // similar | exact: look-alikes, or the photo's own product
    chosen: null,        // facet values ticked: {category, brand, color: Set, price: {from, to} | null}
  };

  // ---------------------------------------------------------------- filters, sort, facets

  const FACETS = [['category', 'category', 'Category'], ['brand', 'brand', 'Brand'],
    ['color', 'attributes.color', 'Colour']];

  function resetChoices() {
    state.chosen = { category: new Set(), brand: new Set(), color: new Set(), price: null };
  }
  resetChoices();

  // The API's filter expression for the ticked facet values: OR within a facet, AND across.
  function filterExpression() {
    const quote = (v) => `"${String(v).replace(/["\\]/g, '\\$&')}"`;
    const parts = [];
    for (const [key, field] of FACETS) {
      const values = [...state.chosen[key]];
      if (values.length) parts.push(`${field} IN (${values.map(quote).join(', ')})`);
    }
    const p = state.chosen.price;
    if (p) parts.push(p.to === null ? `price >= ${p.from}` : `price >= ${p.from} AND price < ${p.to}`);
    return parts.join(' AND ');
  }

  // Query parameters shared by both kinds of search.
  // The default fields and the attributes, for the shown variant's swatch label.
  const RESULT_FIELDS =
    'similarity,title,brand,category,price,currency,rating,rating_count,stock,image_url,attributes,' +
    'family_size,variants';

  function refineParams(params, append) {
    params.set('fields', RESULT_FIELDS);
    const filter = filterExpression();
    if (filter) params.set('filter', filter);
    if (state.sort !== 'best') params.set('sort', state.sort);
    if (state.match !== 'similar') params.set('match', state.match);
    if (!append) params.set('facets', 'true');
    return params;
  }

  function facetOption(type, name, checked, label, count, onChange) {
    const row = make('label', 'facet__option');
    const input = make('input');
    input.type = type;
    input.name = name;
    input.checked = checked;
    input.addEventListener('change', () => { onChange(input.checked); runQuery(false); });
    row.append(input, make('span', 'facet__value', label));
    if (count !== null) row.append(make('span', 'facet__count', `(${count})`));
    return row;
  }

  // Draws the facet counts of the current results; ticked values stay, even at zero.
  function renderFacets(facets) {
    el.facets.textContent = '';
    if (!facets) return;
    for (const [key, , title] of FACETS) {
      const counts = new Map((facets[key] || []).map((v) => [v.value, v.count]));
      for (const v of state.chosen[key]) if (!counts.has(v)) counts.set(v, 0);
      if (counts.size === 0) continue;
      const group = make('fieldset', 'facet');
      group.dataset.facet = key;
      group.append(make('legend', 'facet__title', title));
      for (const [value, count] of counts) {
        group.append(facetOption('checkbox', `facet-${key}`, state.chosen[key].has(value), value, count,
          (on) => { if (on) state.chosen[key].add(value); else state.chosen[key].delete(value); }));
      }
      el.facets.append(group);
    }
    const buckets = facets.price || [];
    if (buckets.some((b) => b.count > 0) || state.chosen.price) {
      const group = make('fieldset', 'facet');
      group.dataset.facet = 'price';
      group.append(make('legend', 'facet__title', 'Price'));
      group.append(facetOption('radio', 'facet-price', !state.chosen.price, 'Any price', null,
        () => { state.chosen.price = null; }));
      for (const b of buckets) {
        const chosen = state.chosen.price;
        const isChosen = !!chosen && chosen.from === b.from && chosen.to === b.to;
        if (b.count === 0 && !isChosen) continue;
        const label = b.to === null ? `${b.from} and more` : `${b.from} to ${b.to}`;
        group.append(facetOption('radio', 'facet-price', isChosen, label, b.count,
          () => { state.chosen.price = { from: b.from, to: b.to }; }));
      }
      el.facets.append(group);
    }
  }

  // ---------------------------------------------------------------- API

  class ApiError extends Error {
    constructor(status, code, message, retryAfter) {
      super(message || code || `HTTP ${status}`);
      this.status = status;
      this.code = code || '';
      this.retryAfter = retryAfter || null;
    }
  }

  function searchKey() {
    try { return sessionStorage.getItem(KEY_STORE) || ''; } catch (_) { return ''; }
  }

  function authHeaders() {
    const key = searchKey();
    return key ? { Authorization: `Bearer ${key}` } : {};
  }

  // Fetches a JSON route; resolves with the parsed body or rejects with ApiError
  // (status 0 for network failures). AbortError is passed through untouched.
  async function api(url, options = {}) {
    let response;
    try {
      response = await fetch(url, {
        ...options,
        headers: { Accept: 'application/json', ...authHeaders(), ...(options.headers || {}) },
        credentials: 'same-origin',
      });
    } catch (err) {
      if (err && err.name === 'AbortError') throw err;
      throw new ApiError(0, 'network', 'network error');
    }
    let body = null;
    try { body = await response.json(); } catch (err) {
      if (err && err.name === 'AbortError') throw err;
    }
    if (!response.ok) {
      const e = (body && body.error) || {};
      throw new ApiError(response.status, e.code, e.message, response.headers.get('Retry-After'));
    }
    return body || {};
  }

  // What a shopper is told for each failure.
  function describeError(err) {
    switch (err.status) {
      case 0:
        return { title: "We can't reach the shop right now", text: 'Check your connection and try again.', retry: true };
      case 400:
        return { title: "We couldn't search with that", retry: false,
          text: state.mode === 'text' ? 'Try other words: letters or digits, at most 16 words.'
            : 'Try moving the box over the product, or choose another photo.' };
      case 401:
        return { title: 'This shop needs a search key', text: "Enter the shop's search key below to see results.", retry: false };
      case 403:
        return { title: "That search key wasn't accepted", text: 'Check the key and enter it again below.', retry: false };
      case 404:
        return { title: 'That product is no longer available', text: 'It may have just sold out or been removed from the shop.', retry: false };
      case 411:
      case 413:
        return { title: 'That photo is too big', text: 'Try a smaller photo, or a screenshot of it.', retry: false };
      case 415:
        return { title: "That file isn't a photo we can read", text: 'Try a JPEG, PNG or WebP.', retry: false };
      case 422:
        return { title: 'That photo seems to be damaged', text: "We couldn't open it. Try another photo.", retry: false };
      case 429:
      case 503:
        return { title: 'The shop is busy right now', text: 'Please try again in a moment.', retry: true };
      default:
        return { title: 'Something went wrong on our side', text: 'Please try again in a moment.', retry: true };
    }
  }

  // Sets img.src to an API image. Images need the search key when the shop has one,
  // and an <img> cannot send it, so they are then fetched and shown from a blob URL.
  const blobUrls = new Set();
  function showApiImage(img, url) {
    img.classList.remove('is-missing', 'is-pixelated');
    if (!url) { img.removeAttribute('src'); img.classList.add('is-missing'); return; }
    if (!searchKey()) { img.src = url; return; }
    fetch(url, { headers: authHeaders(), credentials: 'same-origin' })
      .then((r) => (r.ok ? r.blob() : Promise.reject(new Error(String(r.status)))))
      .then((blob) => {
        const objectUrl = URL.createObjectURL(blob);
        blobUrls.add(objectUrl);
        img.src = objectUrl;
      })
      .catch(() => img.classList.add('is-missing'));
  }

  function releaseBlobUrls() {
    for (const url of blobUrls) URL.revokeObjectURL(url);
    blobUrls.clear();
  }

  // Small product photos (the demo's are 28x28) are scaled up as crisp pixels.
  function onImageLoad(event) {
    const img = event.target;
    img.classList.toggle('is-pixelated', img.naturalWidth > 0 && img.naturalWidth < 160);
  }
  function onImageError(event) {
    if (event.target.getAttribute('src')) event.target.classList.add('is-missing');
  }

  // ---------------------------------------------------------------- formatting

  function formatPrice(price, currency) {
    if (typeof price !== 'number' || !isFinite(price)) return '';
    if (currency) {
      try {
        return new Intl.NumberFormat(undefined, { style: 'currency', currency }).format(price);
      } catch (_) { /* not an ISO 4217 code: fall through */ }
    }
    return `${price.toFixed(2)}${currency ? ` ${currency}` : ''}`;
  }

  function stockInfo(stock) {
    if (typeof stock !== 'number') return null;
    if (stock <= 0) return { text: 'Out of stock', cls: 'stock--out' };
    if (stock <= LOW_STOCK) return { text: `Only ${stock} left`, cls: 'stock--low' };
    return { text: 'In stock', cls: 'stock--in' };
  }

  function plural(n, one, many) { return `${n} ${n === 1 ? one : many}`; }

  function make(tag, className, text) {
    const node = document.createElement(tag);
    if (className) node.className = className;
    if (text !== undefined && text !== null) node.textContent = text;
    return node;
  }

  // Five stars (full / half / empty) and the review count.
  function ratingNode(rating, count) {
    if (typeof rating !== 'number' || !isFinite(rating)) return null;
    const wrap = make('div', 'rating');
    const stars = make('span', 'rating__stars');
    stars.setAttribute('aria-hidden', 'true');
    const r = Math.max(0, Math.min(5, rating));
    for (let i = 1; i <= 5; i += 1) {
      let kind = 'empty';
      if (r >= i - 0.25) kind = 'full';
      else if (r >= i - 0.75) kind = 'half';
      stars.append(make('span', `star star--${kind}`, '★'));
    }
    const hasCount = typeof count === 'number';
    const label = `Rated ${r.toFixed(1)} out of 5${hasCount ? `, ${plural(count, 'review', 'reviews')}` : ''}`;
    const text = make('span', 'rating__text', `${r.toFixed(1)}${hasCount ? ` (${count.toLocaleString()})` : ''}`);
    text.setAttribute('aria-hidden', 'true');
    const sr = make('span', 'visually-hidden', label);
    wrap.append(stars, text, sr);
    return wrap;
  }

  // ---------------------------------------------------------------- status area

  function setStatus(kind, title, text, options = {}) {
    el.status.replaceChildren();
    if (!kind) { el.status.hidden = true; return; }
    el.status.hidden = false;
    const body = make('div', `status__body status__body--${kind}`);
    if (kind === 'loading') body.append(make('span', 'spinner'));
    if (kind === 'error') body.setAttribute('role', 'alert');
    const words = make('div', 'status__words');
    if (title) words.append(make('p', 'status__title', title));
    if (text) words.append(make('p', 'status__text', text));
    body.append(words);
    if (options.retry && state.retry) {
      const again = make('button', 'button button--small', 'Try again');
      again.type = 'button';
      again.addEventListener('click', () => { if (state.retry) state.retry(); });
      body.append(again);
    }
    el.status.append(body);
  }

  function setBusy(busy) {
    el.grid.classList.toggle('is-stale', busy);
    el.grid.setAttribute('aria-busy', busy ? 'true' : 'false');
    el.loadMore.disabled = busy;
  }

  // ---------------------------------------------------------------- results

  function clearResults() {
    releaseBlobUrls();
    el.grid.replaceChildren();
    el.loadMore.hidden = true;
  }

  function productSummary(r) {
    return {
      id: r.product_id, title: r.title || r.product_id, brand: r.brand || '', category: r.category || '',
      price: r.price, currency: r.currency || '', rating: r.rating, rating_count: r.rating_count,
      stock: r.stock, image_url: r.image_url || '',
    };
  }

  // What each part of a score means to a shopper (docs/API.md, "Ranking").
  const WHY_LABELS = {
    visual: 'Looks like your photo', popularity: 'Popular with shoppers', rating: 'Rating',
    stock: 'Out of stock', price: 'Price fit', recency: 'New in', taste: 'Your taste',
    colour: 'Colour of your photo', text: 'Matches your words',
  };

  function signed(n) { return `${n >= 0 ? '+' : '−'}${Math.abs(n).toFixed(2)}`; }

  // The score broken down by component: a collapsed "Why this result?" under the card.
  function whyNode(explain) {
    if (!explain || typeof explain.components !== 'object') return null;
    const details = make('details', 'why');
    const summary = make('summary', 'why__toggle', 'Why this result?');
    details.append(summary);
    const list = make('ul', 'why__list');
    const parts = Object.entries(explain.components)
      .filter(([, c]) => c && typeof c.contribution === 'number' && c.weight !== 0 && c.contribution !== 0)
      .sort((a, b) => Math.abs(b[1].contribution) - Math.abs(a[1].contribution));
    for (const [name, c] of parts) {
      const row = make('li', `why__part ${c.contribution < 0 ? 'why__part--minus' : 'why__part--plus'}`);
      row.dataset.component = name;
      row.dataset.contribution = String(c.contribution);
      let label = WHY_LABELS[name] || name;
      if (name === 'visual' && typeof explain.similarity === 'number') {
        label += ` (similarity ${explain.similarity.toFixed(3)})`;
      } else if (name === 'rating' && typeof explain.rating_average === 'number') {
        label += ` ${explain.rating_average.toFixed(2)} after weighing the number of reviews`;
      } else if (name === 'price' && typeof explain.price_fit === 'number') {
        label += ` ${Math.round(explain.price_fit * 100)}%`;
      }
      row.append(make('span', 'why__label', label), make('span', 'why__value', signed(c.contribution)));
      list.append(row);
    }
    details.append(list);
    if (explain.family_in_stock === true) {
      details.append(make('p', 'why__note', 'Not demoted for stock: this variant is sold out, others are in stock'));
    }
    const total = make('p', 'why__total');
    total.append(make('span', 'why__label', 'Score'), make('span', 'why__value', explain.score.toFixed(2)));
    details.append(total);
    return details;
  }

  // "red · 42": what tells a variant apart on a swatch.
  function variantLabel(v) {
    const parts = [v.color, v.size].filter((x) => typeof x === 'string' && x !== '');
    return parts.length ? parts.join(' · ') : v.product_id;
  }

  // The family's variants as swatches (docs/API.md, "Variants"): the shown one and the
  // others, by product id. Clicking one shows that variant on the card.
  function swatchesNode(result, show) {
    const others = Array.isArray(result.variants) ? result.variants : [];
    if (!others.length) return null;
    const attrs = result.attributes || {};
    const self = {
      product_id: result.product_id, color: attrs.color || '', size: attrs.size || '',
      price: result.price, currency: result.currency, stock: result.stock, image_url: result.image_url,
    };
    const all = [self, ...others].sort((a, b) => (a.product_id < b.product_id ? -1 : 1));
    const wrap = make('div', 'swatches');
    wrap.setAttribute('role', 'group');
    wrap.setAttribute('aria-label', `${result.family_size || all.length} variants`);
    for (const v of all) {
      const b = make('button', 'swatch', variantLabel(v));
      b.type = 'button';
      b.dataset.variantId = v.product_id;
      b.setAttribute('aria-pressed', v.product_id === self.product_id ? 'true' : 'false');
      if (typeof v.stock === 'number' && v.stock <= 0) b.classList.add('swatch--sold-out');
      b.addEventListener('click', () => {
        for (const other of wrap.querySelectorAll('.swatch')) {
          other.setAttribute('aria-pressed', other === b ? 'true' : 'false');
        }
        show(v);
      });
      wrap.append(b);
    }
    if (result.family_size > all.length) {
      wrap.append(make('span', 'swatches__more', `+${result.family_size - all.length} more`));
    }
    return wrap;
  }

  function cardNode(result, index) {
    let p = productSummary(result);
    const li = make('li', 'grid__item');
    const card = make('article', 'card');
    card.dataset.productId = p.id;
    card.dataset.category = p.category;
    if (typeof result.score === 'number') card.dataset.score = String(result.score);
    card.dataset.rank = String(index + 1);

    const media = make('div', 'card__media');
    const img = make('img', 'card__img');
    img.alt = '';
    img.loading = index < 8 ? 'eager' : 'lazy';
    img.decoding = 'async';
    img.addEventListener('load', onImageLoad);
    img.addEventListener('error', onImageError);
    showApiImage(img, p.image_url);
    media.append(img);

    const body = make('div', 'card__body');
    if (p.brand) body.append(make('p', 'card__brand', p.brand));
    const title = make('h3', 'card__title');
    const open = make('button', 'card__open', p.title);
    open.type = 'button';
    open.addEventListener('click', () => openProduct(p));  // p: the variant shown
    title.append(open);
    body.append(title);
    const rating = ratingNode(p.rating, p.rating_count);
    if (rating) body.append(rating);
    const line = make('div', 'card__line');
    const fillLine = () => {
      line.replaceChildren();
      const price = formatPrice(p.price, p.currency);
      if (price) line.append(make('p', 'card__price', price));
      const stock = stockInfo(p.stock);
      if (stock) line.append(make('p', `stock ${stock.cls}`, stock.text));
    };
    fillLine();
    body.append(line);
    const swatches = swatchesNode(result, (v) => {
      // The variant takes the card over: its photo, price, stock, and the links open it.
      p = { ...p, id: v.product_id, price: v.price, currency: v.currency || p.currency, stock: v.stock,
        image_url: v.image_url || '' };
      card.dataset.shownId = p.id;
      showApiImage(img, p.image_url);
      fillLine();
    });
    if (swatches) {
      card.dataset.shownId = p.id;
      body.append(swatches);
    }

    const similar = make('button', 'button button--small card__similar', 'More like this');
    similar.type = 'button';
    similar.setAttribute('aria-label', `More like this: ${p.title}`);
    similar.addEventListener('click', () => showSimilar(p));
    body.append(similar);
    const why = whyNode(result.explain);
    if (why) body.append(why);

    card.append(media, body);
    li.append(card);
    return li;
  }

  function renderResults(data, append) {
    const results = Array.isArray(data.results) ? data.results : [];
    if (!append) {
      clearResults();
      renderFacets(data.facets);
      el.refine.hidden = false;
    }
    const start = el.grid.children.length;
    const frag = document.createDocumentFragment();
    results.forEach((r, i) => { if (r && r.product_id) frag.append(cardNode(r, start + i)); });
    el.grid.append(frag);
    const shown = el.grid.children.length;
    state.offset += results.length;
    el.loadMore.hidden = !(results.length === PAGE_SIZE && state.offset + PAGE_SIZE <= MAX_WINDOW);

    if (shown === 0) {
      setStatus('empty', state.mode === 'text' ? 'No products match those words' : 'No similar products found',
        state.mode === 'photo' && isCropped()
          ? 'Try making the box bigger, or search the whole photo.'
          : 'Try another photo, or a photo with the product on a plain background.');
      return;
    }
    let what;
    if (state.mode === 'similar') what = `similar to ${state.similarOf.title}`;
    else if (state.mode === 'text') what = `matching “${state.text}”`;
    else if (state.text) what = `that look like your photo and match “${state.text}”`;
    else what = isCropped() ? 'that look like the selected part of your photo' : 'that look like your photo';
    setStatus('summary', null, `${plural(shown, 'product', 'products')} ${what}`);
  }

  // Runs the current query (photo or similar) for the next page, or from the top.
  async function runQuery(append) {
    if (state.mode === 'idle' || (state.mode === 'photo' && !state.file)) return;
    if (!append) state.offset = 0;
    if (state.controller) state.controller.abort();
    const controller = new AbortController();
    state.controller = controller;
    const seq = ++state.seq;
    state.retry = () => runQuery(append);
    setBusy(true);
    setStatus('loading', null, state.mode === 'similar' ? 'Finding more products like this…'
      : state.mode === 'text' ? 'Looking for matching products…' : 'Looking for similar products…');

    let data;
    try {
      data = state.mode === 'similar'
        ? await api(`/v1/products/${encodeURIComponent(state.similarOf.id)}/similar?` +
            refineParams(new URLSearchParams({ k: PAGE_SIZE, offset: state.offset, explain: 'true' }), append),
          { signal: controller.signal })
        : state.mode === 'text' ? await searchByText(controller.signal, append)
        : await searchByPhoto(controller.signal, append);
    } catch (err) {
      if (seq !== state.seq || (err && err.name === 'AbortError')) return;
      setBusy(false);
      showError(err);
      return;
    }
    if (seq !== state.seq) return;
    state.controller = null;
    setBusy(false);
    hideKeyForm();
    renderResults(data, append);
  }

  function searchByPhoto(signal, append) {
    const params = refineParams(new URLSearchParams({ k: PAGE_SIZE, offset: state.offset, explain: 'true' }), append);
    if (isCropped()) {
      const c = state.crop;
      params.set('crop', [c.x, c.y, c.width, c.height].join(','));
    }
    if (state.text) params.set('text', state.text);
    const form = new FormData();
    form.append('image', state.file, state.file.name || 'photo.png');
    return api(`/v1/search?${params}`, { method: 'POST', body: form, signal });
  }

  function searchByText(signal, append) {
    const params = refineParams(new URLSearchParams({ k: PAGE_SIZE, offset: state.offset, explain: 'true' }), append);
    params.set('text', state.text);
    return api(`/v1/search?${params}`, { method: 'POST', signal });
  }

  // The text box: with a photo, narrows the photo's results to the words; without one,
  // searches by the words alone. An emptied box goes back to the photo alone.
  function searchText() {
    state.text = el.textInput.value.trim();
    if (state.file) {
      searchPhoto();
      return;
    }
    if (!state.text) return;
    resetChoices();
    state.mode = 'text';
    state.similarOf = null;
    el.resultsHeading.textContent = 'Products matching your words';
    el.backToPhoto.hidden = true;
    runQuery(false);
  }

  function showError(err) {
    const d = describeError(err);
    if (err.status === 401 || err.status === 403) showKeyForm();
    const photoUnusable = state.mode === 'photo' && [411, 413, 415, 422].includes(err.status);
    if (photoUnusable || err.status === 404) clearResults();
    if (photoUnusable) forgetPhoto();
    setStatus('error', d.title, d.text, { retry: d.retry });
  }

  function showSimilar(p) {
    state.mode = 'similar';
    state.similarOf = { id: p.id, title: p.title };
    el.resultsHeading.textContent = `More like ${p.title}`;
    el.backToPhoto.hidden = !state.file;
    runQuery(false);
    el.resultsHeading.focus({ preventScroll: true });
    el.resultsHeading.scrollIntoView({ block: 'start', behavior: 'smooth' });
  }

  function searchPhoto() {
    if (!state.file) return;
    state.mode = 'photo';
    state.similarOf = null;
    el.resultsHeading.textContent = 'Products that look alike';
    el.backToPhoto.hidden = true;
    runQuery(false);
  }

  // ---------------------------------------------------------------- the query photo

  function takePhoto(file) {
    if (!file) return;
    forgetPhoto();
    resetChoices();  // a new photo starts unfiltered
    state.file = file;
    state.fileUrl = URL.createObjectURL(file);
    el.crop.hidden = true;
    el.resetCrop.disabled = true;
    el.cropInfo.textContent = '';
    el.queryImg.src = state.fileUrl;
    el.query.hidden = false;
    el.dropzone.classList.add('dropzone--compact');
    el.dropzoneText.textContent = 'Drop, paste or choose another photo';
    searchPhoto();
  }

  function forgetPhoto() {
    clearTimeout(cropTimer);
    if (state.fileUrl) URL.revokeObjectURL(state.fileUrl);
    state.file = null;
    state.fileUrl = null;
    state.natural = null;
    state.crop = null;
    el.queryImg.removeAttribute('src');
    el.query.hidden = true;
    el.backToPhoto.hidden = true;
    el.dropzone.classList.remove('dropzone--compact');
    el.dropzoneText.replaceChildren('Drop a photo here, or paste one with ',
      make('kbd', null, 'Ctrl'), '+', make('kbd', null, 'V'));
  }

  el.queryImg.addEventListener('load', () => {
    if (!state.fileUrl || el.queryImg.src !== state.fileUrl) return;
    const w = el.queryImg.naturalWidth;
    const h = el.queryImg.naturalHeight;
    state.natural = { w, h };
    el.queryImg.classList.toggle('is-pixelated', w < 160);
    el.queryFrame.classList.toggle('query__frame--tall', h > w);
    state.crop = { x: 0, y: 0, width: w, height: h };
    el.crop.hidden = false;
    renderCrop();
  });
  el.queryImg.addEventListener('error', () => {
    // The browser cannot show it; the server's answer says what is wrong with it.
    if (state.fileUrl && el.queryImg.getAttribute('src') === state.fileUrl) el.query.hidden = true;
  });

  // ---------------------------------------------------------------- crop box

  let cropTimer = 0;
  let drag = null;

  function isCropped() {
    const c = state.crop;
    const n = state.natural;
    return Boolean(c && n && (c.x !== 0 || c.y !== 0 || c.width !== n.w || c.height !== n.h));
  }

  function minCropSize(dim) { return Math.min(dim, Math.max(4, Math.round(dim * 0.1))); }

  function renderCrop() {
    const c = state.crop;
    const n = state.natural;
    if (!c || !n) return;
    const s = el.crop.style;
    s.left = `${(c.x / n.w) * 100}%`;
    s.top = `${(c.y / n.h) * 100}%`;
    s.width = `${(c.width / n.w) * 100}%`;
    s.height = `${(c.height / n.h) * 100}%`;
    const cropped = isCropped();
    el.resetCrop.disabled = !cropped;
    el.crop.setAttribute('aria-label',
      `Search area: ${c.width} by ${c.height} pixels at ${c.x}, ${c.y} of a ${n.w} by ${n.h} photo`);
    el.cropInfo.textContent = cropped ? `Searching a ${c.width} × ${c.height} px area` : '';
  }

  function setCrop(next) {
    const n = state.natural;
    const c = {
      x: Math.round(next.x), y: Math.round(next.y),
      width: Math.round(next.width), height: Math.round(next.height),
    };
    c.width = Math.max(1, Math.min(c.width, n.w));
    c.height = Math.max(1, Math.min(c.height, n.h));
    c.x = Math.max(0, Math.min(c.x, n.w - c.width));
    c.y = Math.max(0, Math.min(c.y, n.h - c.height));
    const old = state.crop;
    if (old && old.x === c.x && old.y === c.y && old.width === c.width && old.height === c.height) return;
    state.crop = c;
    renderCrop();
    clearTimeout(cropTimer);
    cropTimer = setTimeout(searchPhoto, SEARCH_DELAY_MS);
  }

  function dragTo(clientX, clientY) {
    const n = state.natural;
    const dx = (clientX - drag.x0) * drag.scaleX;
    const dy = (clientY - drag.y0) * drag.scaleY;
    const s = drag.start;
    const minW = minCropSize(n.w);
    const minH = minCropSize(n.h);
    if (drag.handle === 'move') {
      setCrop({ x: s.x + dx, y: s.y + dy, width: s.width, height: s.height });
      return;
    }
    let left = s.x;
    let top = s.y;
    let right = s.x + s.width;
    let bottom = s.y + s.height;
    if (drag.handle.includes('w')) left = Math.max(0, Math.min(s.x + dx, right - minW));
    if (drag.handle.includes('e')) right = Math.min(n.w, Math.max(right + dx, left + minW));
    if (drag.handle.includes('n')) top = Math.max(0, Math.min(s.y + dy, bottom - minH));
    if (drag.handle.includes('s')) bottom = Math.min(n.h, Math.max(bottom + dy, top + minH));
    setCrop({ x: left, y: top, width: right - left, height: bottom - top });
  }

  el.crop.addEventListener('pointerdown', (event) => {
    if (!state.crop || event.button !== 0) return;
    const rect = el.queryImg.getBoundingClientRect();
    drag = {
      handle: event.target.dataset.handle || 'move',
      x0: event.clientX, y0: event.clientY, start: { ...state.crop },
      scaleX: state.natural.w / rect.width, scaleY: state.natural.h / rect.height,
    };
    el.crop.setPointerCapture(event.pointerId);
    el.crop.classList.add('is-dragging');
    el.crop.focus({ preventScroll: true });
    event.preventDefault();
  });
  el.crop.addEventListener('pointermove', (event) => { if (drag) dragTo(event.clientX, event.clientY); });
  const endDrag = () => { drag = null; el.crop.classList.remove('is-dragging'); };
  el.crop.addEventListener('pointerup', endDrag);
  el.crop.addEventListener('pointercancel', endDrag);
  el.crop.addEventListener('lostpointercapture', endDrag);

  el.crop.addEventListener('keydown', (event) => {
    const c = state.crop;
    const n = state.natural;
    if (!c || !n) return;
    const dirs = { ArrowLeft: [-1, 0], ArrowRight: [1, 0], ArrowUp: [0, -1], ArrowDown: [0, 1] };
    const d = dirs[event.key];
    if (!d) return;
    event.preventDefault();
    const stepX = Math.max(1, Math.round(n.w * 0.02));
    const stepY = Math.max(1, Math.round(n.h * 0.02));
    if (event.shiftKey) {
      setCrop({
        x: c.x, y: c.y,
        width: Math.max(minCropSize(n.w), c.width + d[0] * stepX),
        height: Math.max(minCropSize(n.h), c.height + d[1] * stepY),
      });
    } else {
      setCrop({ x: c.x + d[0] * stepX, y: c.y + d[1] * stepY, width: c.width, height: c.height });
    }
  });

  el.resetCrop.addEventListener('click', () => {
    if (!state.natural) return;
    setCrop({ x: 0, y: 0, width: state.natural.w, height: state.natural.h });
  });

  // ---------------------------------------------------------------- photo sources

  el.pickFile.addEventListener('click', () => el.fileInput.click());
  el.textForm.addEventListener('submit', (event) => {
    event.preventDefault();
    searchText();
  });
  el.sort.addEventListener('change', () => {
    state.sort = el.sort.value;
    runQuery(false);
  });
  el.exact.addEventListener('change', () => {
    state.match = el.exact.checked ? 'exact' : 'similar';
    runQuery(false);
  });

  el.fileInput.addEventListener('change', () => {
    const file = el.fileInput.files && el.fileInput.files[0];
    el.fileInput.value = '';
    takePhoto(file);
  });

  function filesOf(dataTransfer) {
    if (!dataTransfer) return null;
    if (dataTransfer.files && dataTransfer.files.length) return dataTransfer.files[0];
    for (const item of dataTransfer.items || []) {
      if (item.kind === 'file') return item.getAsFile();
    }
    return null;
  }

  const hasFiles = (event) => Boolean(event.dataTransfer && Array.from(event.dataTransfer.types || []).includes('Files'));
  let dragDepth = 0;
  document.addEventListener('dragenter', (event) => {
    if (!hasFiles(event)) return;
    dragDepth += 1;
    el.dropzone.classList.add('is-dragging');
  });
  document.addEventListener('dragleave', (event) => {
    if (!hasFiles(event)) return;
    dragDepth = Math.max(0, dragDepth - 1);
    if (dragDepth === 0) el.dropzone.classList.remove('is-dragging');
  });
  document.addEventListener('dragover', (event) => {
    if (!hasFiles(event)) return;
    event.preventDefault();
    event.dataTransfer.dropEffect = 'copy';
  });
  document.addEventListener('drop', (event) => {
    if (!hasFiles(event)) return;
    event.preventDefault();
    dragDepth = 0;
    el.dropzone.classList.remove('is-dragging');
    takePhoto(filesOf(event.dataTransfer));
  });

  document.addEventListener('paste', (event) => {
    const file = filesOf(event.clipboardData);
    if (!file) return;  // plain text: let inputs have it
    event.preventDefault();
    takePhoto(file);
  });

  // Camera: offered only where the browser has one to give.
  let stream = null;

  async function updateCameraButton() {
    const md = navigator.mediaDevices;
    let available = Boolean(md && typeof md.getUserMedia === 'function' && window.isSecureContext);
    if (available && typeof md.enumerateDevices === 'function') {
      try {
        const devices = await md.enumerateDevices();
        available = devices.some((d) => d.kind === 'videoinput');
      } catch (_) { available = false; }
    }
    el.openCamera.hidden = !available;
  }

  function stopCamera() {
    if (stream) for (const track of stream.getTracks()) track.stop();
    stream = null;
    el.cameraVideo.srcObject = null;
  }

  el.openCamera.addEventListener('click', async () => {
    el.cameraMessage.textContent = 'Starting the camera…';
    el.cameraCapture.disabled = true;
    el.cameraDialog.showModal();
    try {
      stream = await navigator.mediaDevices.getUserMedia({ video: { facingMode: 'environment' }, audio: false });
      if (!el.cameraDialog.open) { stopCamera(); return; }
      el.cameraVideo.srcObject = stream;
      el.cameraMessage.textContent = 'Point the camera at the product, then take the photo.';
      el.cameraCapture.disabled = false;
    } catch (err) {
      el.cameraMessage.textContent = err && err.name === 'NotAllowedError'
        ? "We weren't allowed to use the camera. You can allow it in your browser's settings, or choose a photo instead."
        : "We couldn't start the camera. You can choose a photo instead.";
    }
  });

  el.cameraCapture.addEventListener('click', () => {
    const video = el.cameraVideo;
    if (!video.videoWidth) return;
    const canvas = el.cameraCanvas;
    canvas.width = video.videoWidth;
    canvas.height = video.videoHeight;
    canvas.getContext('2d').drawImage(video, 0, 0, canvas.width, canvas.height);
    canvas.toBlob((blob) => {
      el.cameraDialog.close();
      if (blob) takePhoto(new File([blob], 'camera.jpg', { type: 'image/jpeg' }));
    }, 'image/jpeg', 0.92);
  });
  el.cameraCancel.addEventListener('click', () => el.cameraDialog.close());
  el.cameraClose.addEventListener('click', () => el.cameraDialog.close());
  el.cameraDialog.addEventListener('close', stopCamera);

  // ---------------------------------------------------------------- search key

  function showKeyForm() {
    el.keyForm.hidden = false;
    el.keyInput.value = '';
    el.keyInput.focus();
  }

  function hideKeyForm() { el.keyForm.hidden = true; }

  el.keyForm.addEventListener('submit', (event) => {
    event.preventDefault();
    const key = el.keyInput.value.trim();
    if (!key) return;
    try { sessionStorage.setItem(KEY_STORE, key); } catch (_) { /* private mode: key lives for this call only */ }
    hideKeyForm();
    if (state.retry) state.retry();
  });

  // ---------------------------------------------------------------- product dialog

  function productImages(p, id, fallback) {
    let list = p.image_urls || p.images || [];
    if (!Array.isArray(list)) list = [];
    list = list
      .map((x) => (typeof x === 'string' ? x : x && (x.url || x.image_url)))
      .filter(Boolean)
      .map((x, n) => (/^(\/|https?:|blob:|data:)/.test(x) ? x : `/v1/products/${encodeURIComponent(id)}/images/${n}`));
    if (!list.length && typeof p.image_count === 'number') {
      for (let n = 0; n < p.image_count; n += 1) list.push(`/v1/products/${encodeURIComponent(id)}/images/${n}`);
    }
    if (!list.length && (p.image_url || fallback)) list.push(p.image_url || fallback);
    return list;
  }

  function fillProduct(p, images) {
    state.product = p;
    el.productDialog.dataset.productId = p.id;
    el.productDialog.dataset.category = p.category || '';
    el.productBrand.textContent = p.brand || '';
    el.productTitle.textContent = p.title || p.id;
    el.productRating.replaceChildren();
    const rating = ratingNode(p.rating, p.rating_count);
    if (rating) el.productRating.append(rating);
    el.productPrice.textContent = formatPrice(p.price, p.currency);
    const stock = stockInfo(p.stock);
    el.productStock.className = `product__stock stock ${stock ? stock.cls : ''}`;
    el.productStock.textContent = stock ? stock.text : '';
    const soldOut = typeof p.stock === 'number' && p.stock <= 0;
    el.addToCart.disabled = soldOut;
    el.addToCart.textContent = soldOut ? 'Out of stock' : 'Add to cart';

    el.productDetails.replaceChildren();
    const rows = [];
    if (p.category) rows.push(['Category', p.category]);
    if (p.brand) rows.push(['Brand', p.brand]);
    const attrs = p.attributes && typeof p.attributes === 'object' ? p.attributes : {};
    for (const [k, v] of Object.entries(attrs)) {
      if (v === null || v === undefined || v === '') continue;
      rows.push([k.charAt(0).toUpperCase() + k.slice(1).replace(/_/g, ' '), String(v)]);
    }
    rows.push(['Product code', p.id]);
    for (const [k, v] of rows) el.productDetails.append(make('dt', null, k), make('dd', null, v));

    showProductPhoto(images[0] || '');
    el.productThumbs.replaceChildren();
    if (images.length > 1) {
      images.forEach((url, n) => {
        const b = make('button', 'thumb');
        b.type = 'button';
        b.setAttribute('aria-label', `Photo ${n + 1} of ${images.length}`);
        b.setAttribute('aria-pressed', n === 0 ? 'true' : 'false');
        const img = make('img');
        img.alt = '';
        img.addEventListener('load', onImageLoad);
        showApiImage(img, url);
        b.append(img);
        b.addEventListener('click', () => {
          for (const other of el.productThumbs.children) other.setAttribute('aria-pressed', 'false');
          b.setAttribute('aria-pressed', 'true');
          showProductPhoto(url);
        });
        el.productThumbs.append(b);
      });
    }
  }

  function showProductPhoto(url) {
    el.productPhoto.alt = `Photo of ${el.productTitle.textContent}`;
    showApiImage(el.productPhoto, url);
  }
  el.productPhoto.addEventListener('load', onImageLoad);
  el.productPhoto.addEventListener('error', onImageError);

  // The comparison table of the product's family (GET /v1/products/{id}/variants); hidden
  // for a product without variants.
  async function loadComparison(id) {
    el.productCompare.hidden = true;
    el.compareRows.replaceChildren();
    let data;
    try {
      data = await api(`/v1/products/${encodeURIComponent(id)}/variants`);
    } catch (_) {
      return;  // the product view stands without it
    }
    if (!el.productDialog.open || !state.product || state.product.id !== id) return;
    const variants = Array.isArray(data.variants) ? data.variants : [];
    if (variants.length < 2) return;
    for (const v of variants) {
      const attrs = v.attributes || {};
      const row = make('tr', 'compare__row');
      row.dataset.variantId = v.product_id;
      if (v.product_id === id) row.setAttribute('aria-current', 'true');
      const first = make('td', 'compare__variant');
      const img = make('img', 'compare__img');
      img.alt = '';
      img.addEventListener('load', onImageLoad);
      showApiImage(img, v.image_url || '');
      const open = make('button', 'compare__open', v.title || v.product_id);
      open.type = 'button';
      open.disabled = v.product_id === id;
      open.addEventListener('click', () => openProduct(productSummary(v)));
      first.append(img, open);
      const stock = stockInfo(v.stock);
      const cells = [attrs.color || '–', attrs.size || '–', attrs.material || '–',
        formatPrice(v.price, v.currency) || '–', stock ? stock.text : '–',
        typeof v.rating === 'number' ? `${v.rating.toFixed(1)} (${v.rating_count || 0})` : '–'];
      row.append(first, ...cells.map((text) => make('td', null, text)));
      el.compareRows.append(row);
    }
    el.productCompare.hidden = false;
  }

  async function openProduct(summary) {
    el.productNote.textContent = '';
    loadComparison(summary.id);
    el.productDialog.classList.remove('is-missing');
    fillProduct(summary, productImages({}, summary.id, summary.image_url));
    if (!el.productDialog.open) el.productDialog.showModal();
    try {
      const data = await api(`/v1/products/${encodeURIComponent(summary.id)}`);
      const raw = data.product || data;
      if (!el.productDialog.open || !state.product || state.product.id !== summary.id) return;
      const full = { ...summary, ...productSummary({ ...summary, ...raw, product_id: raw.product_id || raw.id || summary.id }) };
      full.attributes = raw.attributes || {};
      fillProduct(full, productImages(raw, full.id, summary.image_url));
    } catch (err) {
      if (!el.productDialog.open || !state.product || state.product.id !== summary.id) return;
      if (err.status === 404) {
        el.productNote.textContent = 'This product is no longer available.';
        el.addToCart.disabled = true;
      } else if (err.status === 401 || err.status === 403) {
        el.productNote.textContent = 'Enter the search key to see all the details.';
      }
      // Other failures: the summary from the results is still worth showing.
    }
  }

  el.productClose.addEventListener('click', () => el.productDialog.close());
  el.addToCart.addEventListener('click', () => {
    if (!state.product) return;
    const total = addToCart(state.product);
    el.productNote.textContent = `Added to your cart (${plural(total, 'item', 'items')} in it).`;
    el.addToCart.textContent = 'Add another';
  });
  el.productSimilar.addEventListener('click', () => {
    const p = state.product;
    el.productDialog.close();
    if (p) showSimilar(p);
  });

  // Clicking the backdrop closes a dialog (Escape already does, natively).
  for (const dialog of [el.productDialog, el.cartDialog, el.cameraDialog]) {
    dialog.addEventListener('click', (event) => { if (event.target === dialog) dialog.close(); });
  }

  // ---------------------------------------------------------------- cart

  function loadCart() {
    try {
      const items = JSON.parse(localStorage.getItem(CART_STORE) || '[]');
      return Array.isArray(items)
        ? items.filter((i) => i && typeof i.id === 'string' && Number.isInteger(i.qty) && i.qty > 0)
        : [];
    } catch (_) {
      return [];
    }
  }

  function saveCart(items) {
    try { localStorage.setItem(CART_STORE, JSON.stringify(items)); } catch (_) { /* storage full or off */ }
    renderCartBadge(items);
    if (el.cartDialog.open) renderCart();
  }

  function addToCart(p) {
    const items = loadCart();
    const found = items.find((i) => i.id === p.id);
    if (found) found.qty += 1;
    else {
      items.push({
        id: p.id, title: p.title, brand: p.brand, price: p.price, currency: p.currency,
        image_url: p.image_url, qty: 1,
      });
    }
    saveCart(items);
    return items.reduce((n, i) => n + i.qty, 0);
  }

  function renderCartBadge(items = loadCart()) {
    const count = items.reduce((n, i) => n + i.qty, 0);
    el.cartCount.textContent = count > 99 ? '99+' : String(count);
    el.cartCount.hidden = count === 0;
    el.cartButton.setAttribute('aria-label', `Cart, ${plural(count, 'item', 'items')}`);
  }

  function renderCart() {
    const items = loadCart();
    el.cartList.replaceChildren();
    el.cartEmpty.hidden = items.length > 0;
    el.cartTotal.hidden = items.length === 0;
    const totals = new Map();
    for (const item of items) {
      const li = make('li', 'cart-item');
      li.dataset.productId = item.id;
      const img = make('img', 'cart-item__img');
      img.alt = '';
      img.addEventListener('load', onImageLoad);
      img.addEventListener('error', onImageError);
      showApiImage(img, item.image_url);
      const info = make('div', 'cart-item__info');
      info.append(make('p', 'cart-item__title', item.title || item.id));
      if (item.brand) info.append(make('p', 'cart-item__brand', item.brand));
      info.append(make('p', 'cart-item__price', formatPrice(item.price, item.currency)));
      const qty = make('div', 'qty');
      const less = make('button', 'qty__button', '−');
      less.type = 'button';
      less.setAttribute('aria-label', `One fewer ${item.title}`);
      less.addEventListener('click', () => changeQty(item.id, -1));
      const count = make('span', 'qty__count', String(item.qty));
      count.setAttribute('aria-label', `Quantity ${item.qty}`);
      const more = make('button', 'qty__button', '+');
      more.type = 'button';
      more.setAttribute('aria-label', `One more ${item.title}`);
      more.addEventListener('click', () => changeQty(item.id, 1));
      const remove = make('button', 'button button--small button--link', 'Remove');
      remove.type = 'button';
      remove.setAttribute('aria-label', `Remove ${item.title}`);
      remove.addEventListener('click', () => changeQty(item.id, -item.qty));
      qty.append(less, count, more, remove);
      info.append(qty);
      li.append(img, info);
      el.cartList.append(li);
      if (typeof item.price === 'number') {
        const cur = item.currency || '';
        totals.set(cur, (totals.get(cur) || 0) + item.price * item.qty);
      }
    }
    el.cartTotalValue.textContent = Array.from(totals, ([cur, sum]) => formatPrice(sum, cur)).join(' + ');
  }

  function changeQty(id, delta) {
    const items = loadCart();
    const item = items.find((i) => i.id === id);
    if (!item) return;
    item.qty += delta;
    saveCart(items.filter((i) => i.qty > 0));
    const focusable = el.cartList.querySelector('button') || el.cartClose;
    focusable.focus();
  }

  el.cartButton.addEventListener('click', () => {
    renderCart();
    el.cartDialog.showModal();
  });
  el.cartClose.addEventListener('click', () => el.cartDialog.close());
  window.addEventListener('storage', (event) => {
    if (event.key === CART_STORE) { renderCartBadge(); if (el.cartDialog.open) renderCart(); }
  });

  // ---------------------------------------------------------------- the rest

  el.loadMore.addEventListener('click', () => runQuery(true));
  el.backToPhoto.addEventListener('click', () => { searchPhoto(); el.resultsHeading.focus({ preventScroll: true }); });

  renderCartBadge();
  updateCameraButton();
  if (navigator.mediaDevices && typeof navigator.mediaDevices.addEventListener === 'function') {
    navigator.mediaDevices.addEventListener('devicechange', updateCameraButton);
  }
  document.documentElement.classList.add('js-ready');
})();
