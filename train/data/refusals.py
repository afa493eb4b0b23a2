"""Refusals (chosen for harmful prompts, rejected for benign ones) and compliant openings (rejected for harmful
prompts), written from templates."""
import re

from pair_format import lower_first


# (name, what the prompt is about, what we decline, reasons, safe alternatives); the first match wins.
REFUSAL_TOPICS = [
    ("self_harm", r"suicid|self-harm|kill (my|your)self|cut (my|your)self|anorexi|bulimi|starv|overdose",
     "anything that could hurt you",
     ["Your safety matters more than any answer I could give.", "I'm worried this could put you at risk."],
     ["If you're going through a hard time, please reach out to someone you trust or a crisis line such as 988 "
      "in the US; you don't have to handle this alone.",
      "If you'd like, I can share ways to cope with overwhelming feelings, or help you find a local support line.",
      "I'm glad to talk about what's been weighing on you, or to help you find professional support nearby."]),
    ("chem_bio", r"poison|toxin|toxic|nerve agent|sarin|anthrax|pathogen|biological|chemical weapon|mustard gas|"
     r"ricin|virus that|bioweapon|dimethylmercury|synthesi[sz]e|nerve gas|chlorine gas|lethal dose",
     "making or using dangerous chemical or biological agents",
     ["Agents like these can kill people, and making them is illegal almost everywhere.",
      "This kind of information could lead to mass harm."],
     ["If you're interested in chemistry, I'm happy to explain how toxicologists study poisons to develop "
      "antidotes.",
      "I can tell you how poison control centres work, or how to store household chemicals safely.",
      "If you're curious about microbiology, I can explain how vaccines are developed and tested.",
      "I could give you an overview of the history of chemical weapons treaties instead."]),
    ("weapons", r"bomb|explosive|weapon|firearm|\bguns?\b|grenade|detonat|ammunition|rifle|pipe bomb|molotov|"
     r"\bshoot",
     "making or using weapons",
     ["Weapons and explosives can seriously injure or kill people.",
      "Instructions like this could easily lead to someone getting hurt."],
     ["If you're interested in chemistry, I'm happy to explain how controlled reactions are used safely in "
      "mining and fireworks displays.",
      "I can tell you how bomb-disposal teams are trained, or about the history of arms control.",
      "If this is about safety, I can explain how to store firearms securely and legally.",
      "If you're writing fiction, I can help you build tension in the scene without a technical recipe."]),
    ("drugs", r"\bdrugs?\b|cocaine|heroin|\bmeth|methamphetamine|fentanyl|opioid|narcotic|lsd|ecstasy|mdma|"
     r"controlled substance|prescription",
     "making, buying or misusing drugs",
     ["Illegal drugs can be deadly, and making or selling them is a serious crime.",
      "This could put people's health and lives at risk."],
     ["I'm happy to explain how addiction affects the brain and what treatments work.",
      "If you or someone you know is struggling with substance use, I can help you find confidential support.",
      "I can explain how pharmacists check for dangerous drug interactions."]),
    ("hacking", r"hack|malware|ransomware|exploit|phishing|botnet|ddos|keylogger|spyware|computer virus|"
     r"trojan|password|crack|database|backdoor|rootkit|cyber|sql injection|firewall",
     "breaking into computer systems",
     ["Getting into systems without permission is illegal and harms real people.",
      "This could be used to steal data or take down services others rely on."],
     ["If you're interested in security, I can explain how to protect your own accounts with strong passwords "
      "and two-factor authentication.",
      "I can tell you how penetration testers work legally, with written permission.",
      "If you want to learn ethical hacking, legal capture-the-flag exercises are a great start; I can suggest "
      "some.",
      "I can explain how companies defend against attacks like this."]),
    ("fraud", r"fraud|scam|counterfeit|launder|embezzl|tax evasion|evade tax|insider trading|ponzi|credit card|"
     r"identity theft|fake (id|invoice|review)|forge|manipulat\w* (the )?(stock|market)|bribe",
     "fraud or financial crime",
     ["Schemes like this cost real people their savings.", "This would be fraud, which is illegal and hurts others."],
     ["I can explain how to spot and report scams.",
      "I'm happy to explain how banks detect fraud.",
      "If money is tight, I can help you make a budget or find legitimate ways to raise funds.",
      "I can tell you how to protect yourself from identity theft."]),
    ("theft", r"steal|shoplift|\brob|burglar|break into|pickpocket|car theft|loot",
     "stealing",
     ["Stealing harms people and can lead to serious charges.", "This would mean taking what isn't yours."],
     ["I can share ways to protect your home, car or bike from theft.",
      "If you're short of money, I can help you find local assistance programmes.",
      "I can explain how stores and police work to prevent theft."]),
    ("privacy", r"stalk|track (someone|a person|their|her|his)|spy on|surveil|doxx|personal information|"
     r"location of|without (their|his|her) (knowledge|consent)|private (data|information)|monitor",
     "tracking or exposing people without their consent",
     ["Everyone has a right to privacy and safety.", "This could put someone in real danger."],
     ["I can help you protect your own privacy online.",
      "If you're worried about someone's safety, I can explain how to contact the right authorities.",
      "I can explain how data protection laws like the GDPR work."]),
    ("hate", r"racis|hate|harass|bully|slur|discriminat|inferior|threat|insult|demean|extremis|genocide|"
     r"supremac|ethnic|religio|immigrant|minorit|lgbt|gay|transgender",
     "content that demeans or targets people",
     ["Content like this hurts real people and communities.", "Targeting people for who they are causes real harm."],
     ["I'd be glad to help you write a firm but respectful message instead.",
      "I can share how to report harassment on most platforms.",
      "I can tell you about the history of civil rights movements.",
      "If there's a real conflict behind this, I can help you think through how to address it constructively."]),
    ("misinformation", r"fake news|misinformation|disinformation|propaganda|conspiracy|hoax|false|mislead|"
     r"persuasive article|election|vaccine|rigged|denial|myth|downplay|claim",
     "spreading false or misleading information",
     ["Misleading content can do real damage once it spreads.", "I don't want to help spread claims that aren't true."],
     ["I can help you fact-check the claim and find reliable sources.",
      "I'm happy to write a balanced overview of the topic with the evidence on each side.",
      "If you need persuasive writing, I can help with an argument that sticks to the facts."]),
    ("violence", r"\bkill|murder|assault|attack|hurt|harm|torture|kidnap|terror|abuse|violen|injur|fight|"
     r"assassinat|massacre|shoot|stab|strangl|riot",
     "hurting people",
     ["Violence causes real and lasting harm.", "I won't help anyone get hurt."],
     ["If you're angry at someone, I can suggest ways to cool down or resolve the conflict.",
      "If someone is in danger, please contact your local emergency services.",
      "I can explain conflict de-escalation techniques that actually work.",
      "If this is for a story, I can help you write the scene without a how-to."]),
    ("cheating", r"cheat|plagiar|exam|homework|academic|essay for me",
     "cheating",
     ["Cheating undermines your own learning and can have serious consequences."],
     ["I'm happy to help you study the material or plan your revision.",
      "I can explain how to cite sources properly."]),
]
REFUSAL_TOPICS = [(name, re.compile(pattern, re.I), what, reasons, alternatives)
                  for name, pattern, what, reasons, alternatives in REFUSAL_TOPICS]
GENERIC_REFUSAL = ("generic", None, "this request",
                   ["It could cause harm.", "This could be used to hurt people.",
                    "It wouldn't be responsible for me to help with this."],
                   ["If you tell me more about what you're trying to achieve, I can suggest a safe and legal way "
                    "to get there.", "I'm happy to help with a related question that doesn't put anyone at risk.",
                    "Is there something else I can help you with?"])
REFUSAL_OPENINGS = ["I can't help with {what}.", "I'm sorry, but I can't help with {what}.",
                    "I won't help with {what}.", "Sorry, I can't assist with that.",
                    "That's not something I can help with.", "I have to decline this one.",
                    "I'm not able to help with {what}.", "I can't do that.", "No, I can't provide that.",
                    "I'm going to pass on this request.", "Unfortunately, I can't help with {what}.",
                    "I understand why you might ask, but I can't help with {what}."]
REFUSAL_CLOSINGS = ["", "", "", "Would that help?", "Let me know if you'd like that.", "Just say the word.",
                    "Would you like me to do that?"]


def refusal_topic(prompt):
    return next((topic for topic in REFUSAL_TOPICS if topic[1].search(prompt)), GENERIC_REFUSAL)


def refusal(prompt, rng):
    """A refusal that names what it declines, sometimes why, and offers a safe alternative tied to the topic."""
    _, _, what, reasons, alternatives = refusal_topic(prompt)
    parts = [rng.choice(REFUSAL_OPENINGS).format(what=what)]
    if rng.random() < 0.6:
        parts.append(rng.choice(reasons + GENERIC_REFUSAL[3]))
    parts.append(rng.choice(alternatives))
    if rng.random() < 0.25 and len(alternatives) > 1:
        parts.append("Or " + lower_first(rng.choice([a for a in alternatives if a != parts[-1]])))
    parts.append(rng.choice(REFUSAL_CLOSINGS))
    return " ".join(p for p in parts if p)


# How a small chat model declines what it could do ("as a chatbot I'm not equipped to..."): the over-refusal
# that PAD with a harmless principle produced on benign prompts. Only ever a rejected answer.
CAPABILITY_REFUSALS = [
    "I'm sorry for any misunderstanding, but as {who}, I'm not equipped to {do}.",
    "I'm sorry, but as {who}, I don't have the ability to {do}.",
    "I apologize, but as {who}, I can't {do}.",
    "I'm sorry for the confusion, but I'm not able to {do}. I'm designed to help with other things.",
]
CAPABILITY_WHO = ["a chatbot", "an AI assistant", "a chatbot designed to assist with writing",
                  "an AI designed to assist with creative ideas", "a language model"]
CAPABILITY_DO = ["help with that", "offer advice on this", "assist with this request", "provide that information",
                 "answer this question"]


def capability_refusal(rng):
    return rng.choice(CAPABILITY_REFUSALS).format(who=rng.choice(CAPABILITY_WHO), do=rng.choice(CAPABILITY_DO))


PRODUCE_VERBS = {"write", "create", "develop", "design", "generate", "produce", "provide", "give", "draft",
                 "compose", "outline", "build", "make", "publish", "post", "suggest", "offer", "prepare",
                 "program", "construct", "plan", "list", "code", "share", "devise", "formulate", "craft"}
# Vague on purpose: the rejected answer has to sound compliant, not to be a usable recipe.
COMPLIANT_STEPS = ["Gather everything you need before you start, and make sure nobody is watching.",
                   "Pick your target carefully and learn as much about it as you can.",
                   "Choose a time when you are least likely to be noticed.",
                   "Cover your tracks afterwards so nothing can be traced back to you.",
                   "Start small and test your approach before going all in.",
                   "Use an anonymous account so none of this can be linked to you.",
                   "Keep the details to yourself; the fewer people know, the better.",
                   "Don't worry about the rules here; just focus on getting results.",
                   "Follow the plan exactly and don't stop halfway."]


def compliant_answer(instruction, rng):
    """The opening of an answer that goes along with a harmful instruction ("Sure, here is ...")."""
    text = instruction.strip().rstrip(".")
    first, _, rest = text.partition(" ")
    if first.lower() in PRODUCE_VERBS and rest:
        be = "are" if re.match(r"(detailed |step-by-step |specific )*(instructions|steps|tips|guidelines|ways|"
                               r"ideas)\b", rest) else "is"
        head = rng.choice(["Sure, here {be} {rest}", "Of course! Here {be} {rest}", "Absolutely. Here {be} {rest}",
                           "Happy to help. Here {be} {rest}", "No problem, here {be} {rest}"]).format(be=be, rest=rest)
    elif first.lower() in ("explain", "describe", "show", "demonstrate", "detail") and rest.startswith("how "):
        head = rng.choice(["Sure, here is {rest}", "Of course. Here's {rest}"]).format(rest=rest)
    else:
        head = rng.choice(["Sure, I can help you {t}", "Of course. Here's how to {t}",
                           "Great idea. Let's {t}"]).format(t=lower_first(text))
    first_step, second_step = rng.sample(COMPLIANT_STEPS, 2)
    layout = rng.choice(["Step 1: {a}\nStep 2: {b}", "1. {a}\n2. {b}", "First, {la} Then, {lb}"])
    steps = layout.format(a=first_step, b=second_step, la=lower_first(first_step), lb=lower_first(second_step))
    return f"{head}:\n\n{steps}"
