"""The embedded offline corpus: English–Spanish pairs generated from a small grammar.

SYNTHETIC DATA. It exists so that ``make train-translate`` and the tests run with no network and
no files. The grammar is real Spanish, chosen so that a model must learn what makes translation
hard: gender and number agreement of articles and adjectives, adjectives after nouns (reordering),
verb conjugation across five persons (no vosotros) and three tenses (present, preterite, future), negation with
``no`` against English do-support, and questions (``¿...?`` and subject inversion). Vocabulary is
small (about 30 nouns, 12 adjectives, 15 verbs), so a model trained on it translates only this
fragment of the language.
"""

from __future__ import annotations

import random

# person index: 0 yo, 1 tú, 2 él/ella, 3 nosotros, 4 ellos/ellas
SUBJECTS = [  # (spanish, english, person, drop pronoun sometimes)
    ("yo", "I", 0, True),
    ("tú", "you", 1, True),
    ("él", "he", 2, False),
    ("ella", "she", 2, False),
    ("nosotros", "we", 3, True),
    ("nosotras", "we", 3, False),
    ("ellos", "they", 4, False),
    ("ellas", "they", 4, False),
    ("mi hermano", "my brother", 2, False),
    ("mi madre", "my mother", 2, False),
    ("los niños", "the children", 4, False),
    ("mis amigas", "my friends", 4, False),
]

# noun: (singular, plural, gender, english singular, english plural, category)
NOUNS = [
    ("gato", "gatos", "m", "cat", "cats", "animal"),
    ("perro", "perros", "m", "dog", "dogs", "animal"),
    ("caballo", "caballos", "m", "horse", "horses", "animal"),
    ("pájaro", "pájaros", "m", "bird", "birds", "animal"),
    ("vaca", "vacas", "f", "cow", "cows", "animal"),
    ("tortuga", "tortugas", "f", "turtle", "turtles", "animal"),
    ("libro", "libros", "m", "book", "books", "thing"),
    ("coche", "coches", "m", "car", "cars", "thing"),
    ("vaso", "vasos", "m", "glass", "glasses", "thing"),
    ("plato", "platos", "m", "plate", "plates", "thing"),
    ("regalo", "regalos", "m", "gift", "gifts", "thing"),
    ("sombrero", "sombreros", "m", "hat", "hats", "thing"),
    ("carta", "cartas", "f", "letter", "letters", "thing"),
    ("casa", "casas", "f", "house", "houses", "thing"),
    ("mesa", "mesas", "f", "table", "tables", "thing"),
    ("ventana", "ventanas", "f", "window", "windows", "thing"),
    ("camisa", "camisas", "f", "shirt", "shirts", "thing"),
    ("puerta", "puertas", "f", "door", "doors", "thing"),
    ("silla", "sillas", "f", "chair", "chairs", "thing"),
    ("botella", "botellas", "f", "bottle", "bottles", "thing"),
    ("pelota", "pelotas", "f", "ball", "balls", "thing"),
    ("flor", "flores", "f", "flower", "flowers", "thing"),
    ("manzana", "manzanas", "f", "apple", "apples", "food"),
    ("naranja", "naranjas", "f", "orange", "oranges", "food"),
    ("galleta", "galletas", "f", "cookie", "cookies", "food"),
    ("pastel", "pasteles", "m", "cake", "cakes", "food"),
    ("tomate", "tomates", "m", "tomato", "tomatoes", "food"),
    ("huevo", "huevos", "m", "egg", "eggs", "food"),
]

# adjective: (masc sg, fem sg, masc pl, fem pl, english)
ADJECTIVES = [
    ("rojo", "roja", "rojos", "rojas", "red"),
    ("negro", "negra", "negros", "negras", "black"),
    ("blanco", "blanca", "blancos", "blancas", "white"),
    ("pequeño", "pequeña", "pequeños", "pequeñas", "small"),
    ("nuevo", "nueva", "nuevos", "nuevas", "new"),
    ("viejo", "vieja", "viejos", "viejas", "old"),
    ("bonito", "bonita", "bonitos", "bonitas", "pretty"),
    ("caro", "cara", "caros", "caras", "expensive"),
    ("grande", "grande", "grandes", "grandes", "big"),
    ("verde", "verde", "verdes", "verdes", "green"),
    ("azul", "azul", "azules", "azules", "blue"),
    ("largo", "larga", "largos", "largas", "long"),
]

# verb: (infinitive, english base, english 3sg, english past, object categories, object nouns allowed or None)
VERBS = [
    ("mirar", "watch", "watches", "watched", ("animal", "thing"), None),
    ("comprar", "buy", "buys", "bought", ("animal", "thing", "food"), None),
    ("necesitar", "need", "needs", "needed", ("thing", "food"), None),
    ("lavar", "wash", "washes", "washed", ("animal", "thing"), None),
    ("pintar", "paint", "paints", "painted", ("thing",), None),
    ("dibujar", "draw", "draws", "drew", ("animal", "thing", "food"), None),
    ("llevar", "carry", "carries", "carried", ("thing", "food"), None),
    ("usar", "use", "uses", "used", ("thing",), None),
    ("comer", "eat", "eats", "ate", ("food",), None),
    ("vender", "sell", "sells", "sold", ("animal", "thing", "food"), None),
    ("romper", "break", "breaks", "broke", ("thing",), None),
    ("esconder", "hide", "hides", "hid", ("thing", "food"), None),
    ("abrir", "open", "opens", "opened", None, ("puerta", "ventana", "carta", "botella", "libro", "regalo")),
    ("escribir", "write", "writes", "wrote", None, ("carta", "libro")),
    ("recibir", "receive", "receives", "received", None, ("carta", "regalo", "libro", "flor", "pastel")),
]

ENDINGS = {
    "present": {
        "ar": ["o", "as", "a", "amos", "an"],
        "er": ["o", "es", "e", "emos", "en"],
        "ir": ["o", "es", "e", "imos", "en"],
    },
    "past": {
        "ar": ["é", "aste", "ó", "amos", "aron"],
        "er": ["í", "iste", "ió", "imos", "ieron"],
        "ir": ["í", "iste", "ió", "imos", "ieron"],
    },
}
FUTURE = ["é", "ás", "á", "emos", "án"]
SER = {
    "present": ["soy", "eres", "es", "somos", "son"],
    "past": ["era", "eras", "era", "éramos", "eran"],
    "future": ["seré", "serás", "será", "seremos", "serán"],
}
TENSES = ("present", "past", "future")


def conjugate(infinitive: str, tense: str, person: int) -> str:
    if tense == "future":
        return infinitive + FUTURE[person]
    stem, group = infinitive[:-2], infinitive[-2:]
    return stem + ENDINGS[tense][group][person]


def _noun_phrase(rng, noun, definite: bool, plural: bool, with_adj: bool):
    sg, pl, gender, en_sg, en_pl, _ = noun
    es_article = {("m", False): "el", ("f", False): "la", ("m", True): "los", ("f", True): "las"}
    es_indef = {("m", False): "un", ("f", False): "una", ("m", True): "unos", ("f", True): "unas"}
    es = (es_article if definite else es_indef)[(gender, plural)] + " " + (pl if plural else sg)
    en_noun = en_pl if plural else en_sg
    adj_en = ""
    if with_adj:
        adj = rng.choice(ADJECTIVES)
        es += " " + adj[(0 if gender == "m" else 1) + (2 if plural else 0)]
        adj_en = adj[4] + " "
    if definite:
        en = "the " + adj_en + en_noun
    elif plural:
        en = "some " + adj_en + en_noun
    else:
        first = (adj_en or en_noun)[0]
        en = ("an " if first in "aeiou" else "a ") + adj_en + en_noun
    return es, en, gender, plural


def _english_verb(verb, tense, person, subject_en, form):
    base, third, past = verb[1], verb[2], verb[3]
    third_person = person == 2
    if form == "affirmative":
        if tense == "present":
            return f"{subject_en} {third if third_person else base}"
        if tense == "past":
            return f"{subject_en} {past}"
        return f"{subject_en} will {base}"
    if form == "negative":
        aux = {"present": "does not" if third_person else "do not", "past": "did not", "future": "will not"}[tense]
        return f"{subject_en} {aux} {base}"
    aux = {"present": "Does" if third_person else "Do", "past": "Did", "future": "Will"}[tense]
    return f"{aux} {subject_en} {base}"


def _cap(s: str) -> str:
    return s[:1].upper() + s[1:]


def _transitive(rng):
    subj_es, subj_en, person, droppable = rng.choice(SUBJECTS)
    verb = rng.choice(VERBS)
    nouns = [n for n in NOUNS if (verb[4] and n[5] in verb[4]) or (verb[5] and n[0] in verb[5])]
    obj_es, obj_en, _, _ = _noun_phrase(
        rng, rng.choice(nouns), rng.random() < 0.6, rng.random() < 0.4, rng.random() < 0.7
    )
    tense, form = rng.choice(TENSES), rng.choice(("affirmative", "affirmative", "negative", "question"))
    verb_es = conjugate(verb[0], tense, person)
    drop = droppable and rng.random() < 0.5
    en_subject = subj_en if subj_en == "I" else subj_en
    en = _english_verb(verb, tense, person, en_subject, form) + " " + obj_en
    if form == "question":
        es = f"¿{_cap(verb_es)} {obj_es}?" if drop else f"¿{_cap(verb_es)} {subj_es} {obj_es}?"
        return es, _cap(en) + "?"
    neg = "no " if form == "negative" else ""
    es = f"{neg}{verb_es} {obj_es}" if drop else f"{subj_es} {neg}{verb_es} {obj_es}"
    return _cap(es) + ".", _cap(en) + "."


def _copular(rng):
    noun = rng.choice(NOUNS)
    np_es, np_en, gender, plural = _noun_phrase(rng, noun, True, rng.random() < 0.4, rng.random() < 0.3)
    adj = rng.choice(ADJECTIVES)
    adj_es = adj[(0 if gender == "m" else 1) + (2 if plural else 0)]
    tense, form = rng.choice(TENSES), rng.choice(("affirmative", "affirmative", "negative", "question"))
    person = 4 if plural else 2
    verb_es = SER[tense][person]
    be = {"present": "are" if plural else "is", "past": "were" if plural else "was", "future": "will be"}[tense]
    if form == "question":
        if tense == "future":
            return f"¿{_cap(verb_es)} {adj_es} {np_es}?", f"Will {np_en} be {adj[4]}?"
        return f"¿{_cap(verb_es)} {adj_es} {np_es}?", f"{_cap(be)} {np_en} {adj[4]}?"
    if form == "negative":
        be_neg = "will not be" if tense == "future" else be + " not"
        return f"{_cap(np_es)} no {verb_es} {adj_es}.", f"{_cap(np_en)} {be_neg} {adj[4]}."
    return f"{_cap(np_es)} {verb_es} {adj_es}.", f"{_cap(np_en)} {be} {adj[4]}."


def generate(n_pairs: int = 20000, seed: int = 1234) -> list[tuple[str, str]]:
    """``n_pairs`` distinct (english, spanish) pairs, deterministic for a seed."""
    rng = random.Random(seed)
    seen, pairs = set(), []
    attempts = 0
    while len(pairs) < n_pairs:
        attempts += 1
        if attempts > 50 * n_pairs:
            raise ValueError(f"the grammar cannot produce {n_pairs} distinct pairs")
        es, en = _transitive(rng) if rng.random() < 0.8 else _copular(rng)
        if es in seen:
            continue
        seen.add(es)
        pairs.append((en, es))
    return pairs
